"""The paper's experiments for `tinydistill reproduce`: runs, tables, plots, peers.

The core library never imports this package (tests/test_layout.py checks it).
"""
