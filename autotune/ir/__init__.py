"""The graph a network is planned on: layers and their ops, groups of layers, and the batch tables the
cost model and devices read.
"""
