"""Guided alert drills and the terminal trace view (``modelobs drill``, ``modelobs trace``,
``modelobs flag``) against the native stack's APIs.

    backends.py   the stack's query APIs: Prometheus, Alertmanager, Jaeger, VictoriaLogs
    waterfall.py  a trace drawn as a span waterfall, and its log lines
    scenarios.py  one drill per fault flag: the alert it raises and the evidence to follow
    runner.py     switch on, follow alert -> panel query -> exemplar -> trace -> logs, switch off
    commands.py   the command-line front end
"""
