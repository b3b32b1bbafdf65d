"""The leadership KPI console: a Streamlit app over Kora's KPI API (and, when configured,
Prometheus' SLO recording rules). It holds no data of its own and no secret but the signed-in
person's tokens, kept in the Streamlit session only."""
