"""The tools the daemon exposes: ``chat``, ``listmodels``, ``status`` and ``version``."""
