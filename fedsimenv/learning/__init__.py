"""Learning plane: datasets, partitions, models, pruning, aggregation and trainers.

Imports neither gymnasium nor simpy.
"""
