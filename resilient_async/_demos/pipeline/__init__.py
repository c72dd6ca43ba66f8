"""The demo: one workload against a failing dependency, unprotected and guarded, side by side.

A simulated dependency goes through five phases: healthy; flaky (a quarter of the calls fail
at once); slow (a fifth of the calls take 1 to 3 s); down (every call is refused or hangs);
healthy again. Two groups of clients send the same workload at the same time, each group to
its own copy of the dependency (same seed, same phases):

- unprotected clients call it plainly, with a 5 s client timeout, as naive code would;
- the other clients call it through one pipeline, each policy with one job:

      pipeline(Fallback(default), Fallback.last_good,   # answer something while it is down
               Timeout(1.0),                            # a request's whole budget
               Retry(attempts=3, budget),               # absorb transient errors
               CircuitBreaker,                          # stop calling it while it is down
               Hedge(0.1),                              # a second attempt for a slow reply
               Timeout(0.5))                            # bound each attempt

While it runs, a live view shows the phase and both sides' counters (updated in place on a
terminal, one plain line per step otherwise). The run ends with the final report: totals,
then phase by phase what each side saw and what the library did.

Modules, top-down: `scenario` (the clients, both sides, the run), `guard` (the guarded
side's pipeline), `service` (the simulated dependency and its phases), `tally` (what each
side saw), `live` (the view while it runs), `report` (the introduction and the final report).
"""
