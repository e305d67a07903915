"""Rolling out a new model version on live evidence: a fleet-wide plan in the registry (plan.py), shadow and
canary traffic in every worker (serving/state.py), and gates read from the shared prediction log
(gates.py) that promote or roll back the candidate."""
