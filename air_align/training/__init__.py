"""air_align.training: AIRConfig / AIRTrainer on TRL's GRPOTrainer, the meta-group sampler, the one trainer recipe
(``recipe.build_trainer``; the reward spec in ``reward_spec.py``), the table of methods (``methods.METHODS``) and
the training run of ``air-align train`` (``run.py``, its folder and record; the command line is ``air_align.cli``).

``from air_align.training import AIRConfig, AIRTrainer`` works; TRL is imported on first use of those names, so that
the light ``air_align.cli.train`` stays fast.
"""

__all__ = ["AIRConfig", "AIRTrainer", "MetaGroupSampler"]


def __getattr__(name: str):
    if name == "AIRConfig":
        from air_align.training.config import AIRConfig

        return AIRConfig
    if name == "AIRTrainer":
        from air_align.training.trainer import AIRTrainer

        return AIRTrainer
    if name == "MetaGroupSampler":
        from air_align.training.sampler import MetaGroupSampler

        return MetaGroupSampler
    raise AttributeError(f"module 'air_align.training' has no attribute {name!r}")
