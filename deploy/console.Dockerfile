# The leadership KPI console (Streamlit, dashboards/kora_console.py) in its own image: Kora with
# its `console` extra, and the dashboards folder. It holds no secret and no database access: it
# reads the Kora API (as the signed-in leadership user) and Prometheus.
# Build from the repository root: docker build -f deploy/console.Dockerfile -t kora-console .
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kora ./kora
RUN python -m venv /opt/kora \
    && /opt/kora/bin/pip install --no-cache-dir --upgrade pip==26.0.1 \
    && /opt/kora/bin/pip install --no-cache-dir ".[console]"

FROM python:3.11.7-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/kora --create-home kora
COPY --from=build /opt/kora /opt/kora
COPY dashboards /opt/kora-console/dashboards
ENV PATH=/opt/kora/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true
USER 10001
WORKDIR /opt/kora-console
EXPOSE 8501
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=2).status == 200 else 1)"]
CMD ["streamlit", "run", "dashboards/kora_console.py", "--server.address=0.0.0.0", "--server.port=8501"]
