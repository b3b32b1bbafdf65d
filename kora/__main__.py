from kora.cli import main

main()
