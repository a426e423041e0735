"""Built-in scenario files (``*.yaml``) and runnable scenario scripts.

The YAML files are package data, so ``fedsimenv.scenario.load_scenario("tiny")`` finds them both in
a checkout and in an installed wheel.
"""
