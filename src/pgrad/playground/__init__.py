"""``pgrad playground``: a local web page where a learner watches a policy gradient learn.

The parts, each with one job:

- ``choices``: the fixed menu (envs, algorithms, knobs and what each does to the gradient);
- ``form``: turns the browser's request into a checked run spec, or one line of pgrad's error;
- ``sessions``: the worker processes, their limit, and fanning their events out to the page;
- ``worker``/``viewer``/``rps``: one run in its own process (training, rendering, the lab's
  rock-paper-scissors); ``measure``: the gradient-estimator lab at the current policy;
- ``lifeline``: what makes every child process end with the server;
- ``app``/``server``: the FastAPI routes and the uvicorn server (the ``playground`` extra);
- ``guard``: what requests get in (the Host and Origin checks, the body size limit);
- ``gridworld``: a tiny Gymnasium env to learn on.

Only ``app``, ``form``, ``guard`` and ``server`` import the web framework, so runs of the gridworld
(``pgrad.playground.gridworld:GridWorld-v0``) load without the extra.
"""
