"""Assemble a Pipeline for a mode: load the shipped (or given) weights, create the sources."""

from __future__ import annotations

from pathlib import Path

from blinktrack_ros.resources import find_share_file
from blinktrack_ros.tracking.engine import FusionConfig
from blinktrack_ros.tracking.pipeline import Pipeline, PipelineConfig
from blinktrack_ros.tracking.seeding import SeedConfig

DEFAULT_EVENT_WEIGHTS = "weights/event_lite3.pt"  # event_lite.pt / event_lite2.pt by path
DEFAULT_IMAGE_WEIGHTS = "weights/image_patch.pt"  # the pyramid image_lite.pt by path


def resolve_weights(path: str | Path | None, default: str) -> Path:
    """The given weights file, or the shipped default; FileNotFoundError says how to fix it."""
    if path:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        return path
    try:
        return find_share_file(default)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"no shipped weights ({default}): pass a weights file, train your own with "
            "`blinktrack train`, or use mode 'klt'") from exc


def event_source_options(runtime: str = "torch", onnx_model: str = "") -> dict:
    """The EventSourceConfig fields for `--event-runtime` / `--event-onnx` (empty when they are
    the defaults)."""
    options: dict = {}
    if runtime != "torch":
        options["runtime"] = runtime
    if onnx_model:
        options["onnx_model"] = onnx_model
    return options


def add_event_runtime_args(parser) -> None:
    """`--event-runtime` and `--event-onnx` (EventSourceConfig.runtime / .onnx_model)."""
    parser.add_argument("--event-runtime", default="torch", choices=["torch", "onnxruntime"],
                        help="what runs the event network step (onnxruntime: CPU, faster on one "
                             "thread; needs `pip install onnxruntime onnx`)")
    parser.add_argument("--event-onnx", default="",
                        help="with --event-runtime onnxruntime: an ONNX step graph of the same "
                             "weights, e.g. the shipped event_lite3_int8.onnx (default: exported "
                             "from the weights at start)")


def make_event_source(weights: str | Path | None = None, device: str = "cpu",
                      untrained: bool = False, seed: int = 0, **source_kwargs: object):
    """An EventSource with the lite (or the checkpoint's) network; untrained: random weights."""
    import torch

    from blinktrack_ros.models.event_config import EventNetConfig
    from blinktrack_ros.models.event_net import EventNet, load_event_net
    from blinktrack_ros.tracking.event_source import EventSource, EventSourceConfig

    if untrained:
        torch.manual_seed(seed)
        model = EventNet(EventNetConfig.lite()).eval()
    else:
        model = load_event_net(resolve_weights(weights, DEFAULT_EVENT_WEIGHTS), device)
    return EventSource(model, EventSourceConfig(device=device, **source_kwargs))


def make_image_source(weights: str | Path | None = None, device: str = "cpu",
                      untrained: bool = False, seed: int = 0, **source_kwargs: object):
    """An ImageSource with the lite (or the checkpoint's) network; untrained: random weights."""
    import torch

    from blinktrack_ros.models.image_config import LITE
    from blinktrack_ros.models.image_net import ImageNet, load_image_net
    from blinktrack_ros.tracking.image_source import ImageSource, ImageSourceConfig

    if untrained:
        torch.manual_seed(seed)
        model = ImageNet(LITE).eval()
    else:
        model = load_image_net(resolve_weights(weights, DEFAULT_IMAGE_WEIGHTS), device)
    return ImageSource(model.to(device), ImageSourceConfig(**source_kwargs))


def weights_noise_fits(event_weights: str | Path | None, image_weights: str | Path | None
                       ) -> dict[str, tuple[float, float] | None]:
    """{"event"|"image": the noise fitted for these weights (their checkpoint's
    `fusion_noise`) or None}, reading only the checkpoints (the fusion node loads no network).
    A shipped default that is not installed gives None; a given file that is missing or bad
    raises (FileNotFoundError / CheckpointError)."""
    from blinktrack_ros.models.checkpoint import fusion_noise_of, load_checkpoint
    from blinktrack_ros.models.event_config import EventNetConfig
    from blinktrack_ros.models.image_config import ImageNetConfig

    fits: dict[str, tuple[float, float] | None] = {}
    for name, path, default, cls in (("event", event_weights, DEFAULT_EVENT_WEIGHTS,
                                      EventNetConfig),
                                     ("image", image_weights, DEFAULT_IMAGE_WEIGHTS,
                                      ImageNetConfig)):
        try:
            resolved = resolve_weights(path, default)
        except FileNotFoundError:
            if path:
                raise
            fits[name] = None
            continue
        _, _, extra = load_checkpoint(resolved, f"{name}_net", cls)
        fits[name] = fusion_noise_of(extra, resolved)
    return fits


def build_pipeline(config: PipelineConfig, fusion: FusionConfig | None = None,
                   seeding: SeedConfig | None = None, event_weights: str | Path | None = None,
                   image_weights: str | Path | None = None, device: str = "cpu",
                   untrained: bool = False, klt_config: object | None = None,
                   frame_join_ms: float = 0.0, provisional: bool = False,
                   join_when_ready: bool = False,
                   event_source: dict | None = None) -> Pipeline:
    """A Pipeline with exactly the sources `config.mode` needs (frame_join_ms, provisional,
    join_when_ready: see Pipeline; event_source: EventSourceConfig fields, e.g.
    {"runtime": "onnxruntime"})."""
    from blinktrack_ros.tracking.klt import KltSource

    mode = config.mode
    event = make_event_source(event_weights, device, untrained, **(event_source or {})) \
        if mode.uses_events else None
    image = make_image_source(image_weights, device, untrained) if mode.uses_image_net \
        else None
    klt = KltSource(klt_config) if mode.uses_klt else None
    return Pipeline(config, fusion, seeding, event_source=event, image_source=image, klt=klt,
                    frame_join_ms=frame_join_ms, provisional=provisional,
                    join_when_ready=join_when_ready)


def sources_from_configs(configs: dict) -> tuple[object | None, object | None, object | None]:
    """(event_source, image_source, klt) for validated parameter sections (the nodes' configs:
    `node` with device / event_weights / image_weights, `pipeline`, `event_source`,
    `image_source`, `klt`); only the sources the pipeline's mode uses."""
    from dataclasses import asdict

    from blinktrack_ros.tracking.klt import KltSource

    node, mode = configs["node"], configs["pipeline"].mode
    event = image = klt = None
    if mode.uses_events:
        kwargs = {k: v for k, v in asdict(configs["event_source"]).items() if k != "device"}
        event = make_event_source(node.event_weights or None, node.device, **kwargs)
    if mode.uses_image_net:
        image = make_image_source(node.image_weights or None, node.device,
                                  **asdict(configs["image_source"]))
    if mode.uses_klt:
        klt = KltSource(configs["klt"])
    return event, image, klt


def pipeline_from_configs(configs: dict) -> Pipeline:
    """The whole tracker in one object (blinktrack_node) from the parameter sections; with
    `node.frame_join_ms` > 0 frames run beside the event windows, which go out provisionally,
    each frame joined as soon as it is done (`Pipeline(provisional=True,
    join_when_ready=True)`)."""
    node = configs.get("node")
    join_ms = float(getattr(node, "frame_join_ms", 0.0))
    return Pipeline(configs["pipeline"], configs["fusion"], configs["seeding"],
                    *sources_from_configs(configs), frame_join_ms=join_ms,
                    provisional=join_ms > 0, join_when_ready=join_ms > 0)


def modules_from_configs(configs: dict):
    """The per-role modules of the three-node deployment: `.event` (None when the mode has no
    events), `.image`, `.fusion` — the same classes the Pipeline wires in one process."""
    from types import SimpleNamespace

    from blinktrack_ros.tracking.modules import EventModule, FusionModule, ImageModule
    from blinktrack_ros.tracking.pipeline import Backlog, fusion_config_for

    cfg = configs["pipeline"]
    event_source, image_source, klt = sources_from_configs(configs)
    event = EventModule(event_source, cfg.event_window_ms, cfg.max_pending_windows,
                        cfg.backlog is Backlog.MERGE) if event_source is not None else None
    image = ImageModule(image_source, klt, configs["seeding"], cfg.reseed)
    fusion = FusionModule(fusion_config_for(cfg.mode, configs["fusion"], event_source,
                                            image_source))
    return SimpleNamespace(event=event, image=image, fusion=fusion)
