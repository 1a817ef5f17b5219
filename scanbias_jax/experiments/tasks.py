"""The experiments by name (`config.experiments.tasks`): each module has `run`,
`sample_shapes` and `augment`; the study runs them, precompile compiles them."""
from scanbias_jax.experiments import name_manufacturer, segmentation, spheres

TASKS = dict(name_manufacturer=name_manufacturer, spheres=spheres, segmentation=segmentation)
