"""Human- and machine-readable summaries of spaces and architectures.

Backs `tunas-jax show` and `tunas-jax spaces`; usable from a notebook:

    import tunas_jax
    summary = tunas_jax.summarize(tunas_jax.resolve_architecture(preset="mobilenet_edgetpu_v2_s"))
    print(summary["params"], summary["macs"])
"""

from __future__ import annotations

from typing import Any

from search_spaces import (
    PRESETS,
    SPACES,
    Architecture,
    SpecError,
    get_preset,
    get_space,
)
from search_spaces import load as load_architecture
from search_spaces.presets import PRESET_SETTINGS
from tasks import describe, get_task


def list_spaces() -> list[dict[str, Any]]:
    """The shipped spaces: decisions, size (index vectors), fingerprint, defaults."""
    rows = []
    for name in SPACES:
        space = get_space(name)
        members = [p for p in PRESETS if space.encode(get_preset(p)) is not None]
        rows.append({
            "name": name, "decisions": space.num_decisions, "size": space.size,
            "fingerprint": space.fingerprint, "image_size": space.default_image_size,
            "num_classes": space.default_num_classes, "member_presets": members,
            "description": space.description,
        })
    return rows


def resolve_architecture(preset: str | None = None, architecture: str | None = None,
                         space: str | None = None) -> Architecture:
    """An Architecture from a preset name or an architecture JSON file.

    With `space`, a preset is placed in that space (error if it is not a
    member) and an architecture file must belong to it.
    """
    if (preset is None) == (architecture is None):
        raise SpecError("give exactly one of --preset NAME or --architecture FILE")
    if preset is not None:
        spec = get_preset(preset)
        if space is None:
            return Architecture(spec, name=preset)
        the_space = get_space(space)
        indices = the_space.encode(spec)
        if indices is None:
            raise SpecError(f"--space: preset {preset!r} is not a member of space {space!r}; "
                            "drop --space to show it on its own")
        return Architecture.from_indices(the_space, indices, name=preset)
    arch = load_architecture(architecture)
    if space is not None and (arch.space is None or arch.space.name != space):
        found = arch.space.name if arch.space else None
        raise SpecError(f"--space: {architecture} belongs to space {found!r}, not {space!r}")
    return arch


def summarize(arch: Architecture, image_size: int | None = None,
              num_classes: int | None = None) -> dict[str, Any]:
    """Block table, trainable params and MACs of an architecture at a resolution, with
    its task's head: classification, or what a preset is deployed with
    (`search_spaces.presets.PRESET_SETTINGS`, e.g. the segmentation presets)."""
    preset = PRESET_SETTINGS.get(arch.name or "") if arch.space is None else None
    default_size, default_classes = ((arch.space.default_image_size,
                                      arch.space.default_num_classes) if arch.space
                                     else (224, 1001))
    if preset:
        default_size, default_classes = preset["image_size"], preset["task"]["num_classes"]
    image_size = image_size or default_size
    num_classes = num_classes or default_classes
    if image_size < 1 or num_classes < 1:
        raise SpecError("--image-size and --num-classes must be positive")
    task = (get_task(**{**preset["task"], "num_classes": num_classes}) if preset
            else num_classes)
    description = describe(arch.spec, image_size, task, name=arch.name or "network")
    return {
        **({"task": task.to_json()} if preset else {}),
        "name": arch.name,
        "space": arch.space.name if arch.space else None,
        "indices": arch.indices_string,
        "image_size": image_size,
        "num_classes": num_classes,
        "params": description.params,
        "macs": description.macs,
        "network": arch.spec.to_json(),
    }


def format_table(summary: dict[str, Any]) -> str:
    """The block table of a summary as fixed-width text."""
    net = summary["network"]
    header = f"{'#':>3} {'stage':>5} {'type':<12} {'in':>5} {'out':>5} {'k':>2} {'s':>2} " \
             f"{'e':>2} {'e1':>3} {'groups':>6} {'gsize':>5} {'res':>4}"
    lines = [
        f"{summary['name'] or 'architecture'}"
        + (f"  (space {summary['space']}, indices {summary['indices']})" if summary["space"]
           else ""),
        f"stem: {net['stem']['kernel_size']}x{net['stem']['kernel_size']}/"
        f"{net['stem']['stride']} conv, {net['stem']['filters']} filters",
        header, "-" * len(header),
    ]
    for i, b in enumerate(net["blocks"]):
        def show(v: Any) -> str:
            return "-" if v is None else str(v)
        if b["skipped"]:
            lines.append(f"{i:>3} {b['stage']:>5} {'skip':<12} {b['input_filters']:>5} "
                         f"{b['output_filters']:>5}")
            continue
        lines.append(
            f"{i:>3} {b['stage']:>5} {b['type']:<12} {b['input_filters']:>5} "
            f"{b['output_filters']:>5} {show(b['kernel_size']):>2} {b['stride']:>2} "
            f"{b['expansion_ratio']:>2} {b['pointwise_expansion']:>3} {show(b['groups']):>6} "
            f"{show(b['group_size']):>5} {'yes' if b['residual'] else '':>4}")
    lines.append(f"head: 1x1 conv, {net['head']['filters']} filters -> avg pool -> "
                 f"fully connected ({summary['num_classes']} classes)")
    lines.append(f"input {summary['image_size']}x{summary['image_size']}: "
                 f"{summary['params']:,} trainable params, {summary['macs']:,} MACs")
    return "\n".join(lines)
