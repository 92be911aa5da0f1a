# Sphinx configuration of the test site: the default theme (alabaster),
# Python and C code highlighted, line numbers on one block.
project = "Flock"
author = "CLLM tests"
release = "1.0"
extensions = []
html_theme = "alabaster"
highlight_language = "python3"
