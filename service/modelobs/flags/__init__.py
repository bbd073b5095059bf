"""Run-time fault flags: failures switched on and off without a restart (OpenFeature).

definitions.py  the flags, their variants and what each variant does (flagd's file format)
store.py        the flag file: created with every flag off, switched atomically
client.py       the services' and the load generator's view: OpenFeature with flagd's
                in-process file provider, evaluations marked on the affected span
metrics.py      modelobs.feature_flag.active, one series per flag (bounded labels)
"""
