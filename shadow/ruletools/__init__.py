"""`shadow rules …`: tools built on the rules (check, offline test cases, schema). They
sit above the rules, compare and replay layers, so the rules layer itself imports
neither (`shadow rules test` compares rebuilt rows, which needs both)."""
