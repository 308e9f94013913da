"""Study configuration: pydantic models of the study YAML and their loading."""

from xaiopt.config.loader import config_to_dict, load_config, parse_config
from xaiopt.config.rule_names import FIRST_LAYER_RULES, GROUP_RULES, RULES, declare_rule
from xaiopt.config.schema import (
    SAMPLERS,
    BlockGroups,
    Choices,
    DataConfig,
    ExplicitGroup,
    MetricConfig,
    ModelConfig,
    Range,
    RuleChoice,
    RuntimeConfig,
    SamplerConfig,
    SpaceConfig,
    StudyConfig,
)

__all__ = [
    "FIRST_LAYER_RULES", "GROUP_RULES", "RULES", "SAMPLERS", "BlockGroups", "Choices", "DataConfig", "ExplicitGroup",
    "MetricConfig", "ModelConfig", "Range", "RuleChoice", "RuntimeConfig", "SamplerConfig", "SpaceConfig",
    "StudyConfig", "config_to_dict", "declare_rule", "load_config", "parse_config",
]
