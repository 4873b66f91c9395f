"""Load an EmoGen pipeline for a user command: a saved pipeline folder or a registry URI
(``models:/emogen@champion``), whose generator artifacts are downloaded through MLflow."""

from __future__ import annotations

from pathlib import Path

from emogen.errors import MissingModelError, UserError

DEFAULT_MODEL = "models/emogen"
REGISTRY_SCHEME = "models:/"


def resolve_model(spec: str) -> Path:
    """``--model`` → a local folder: a saved pipeline, or (for a registry URI such as
    ``models:/emogen@champion``) the generator artifacts of that registered version,
    downloaded through MLflow from the tracking store (``MLFLOW_TRACKING_URI``)."""
    if spec.startswith(REGISTRY_SCHEME):
        import mlflow
        from mlflow.exceptions import MlflowException

        from emogen.registry.model import ARTIFACT
        from emogen.tracking import tracking_uri

        uri = tracking_uri()
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise UserError(
                f"--model {spec}: no MLflow store at {uri}, so no registry; set "
                "MLFLOW_TRACKING_URI or register one (`emogen pipeline register`)"
            )
        mlflow.set_tracking_uri(uri)
        try:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec)) / "artifacts" / ARTIFACT
        except MlflowException as exc:
            raise UserError(
                f"--model {spec}: not found in the registry at {uri} "
                f"({exc.message.splitlines()[0]}); see `emogen pipeline champion`"
            ) from None
        if not folder.is_dir():
            raise UserError(f"--model {spec}: not an EmoGen generator (no artifacts/{ARTIFACT} in it)")
        return folder
    folder = Path(spec)
    if not (folder / "model_index.json").is_file():
        raise MissingModelError(
            f"no EmoGen pipeline at {folder}: train one with `dvc repro generate` "
            f"(builds {DEFAULT_MODEL}/), or pass --model FOLDER of a saved pipeline"
        )
    return folder


def check_model_spec(spec: str) -> None:
    """A local ``--model`` folder must exist before anything loads (a registry URI is checked
    when it resolves)."""
    if not spec.startswith(REGISTRY_SCHEME) and not (Path(spec) / "model_index.json").is_file():
        resolve_model(spec)  # raises the usual "no EmoGen pipeline at ..." error


def load_pipeline(spec: str, device: str):
    from emogen.devices import resolve_device
    from emogen.pipelines.emogen_pipeline import EmoGenPipeline
    from emogen.pipelines.settings import quiet_libraries
    from emogen.registry.model import is_generator_folder, load_generator

    quiet_libraries()
    folder = resolve_model(spec)
    if is_generator_folder(folder):  # a registered generator: built as the generate stage builds it
        return load_generator(folder, device)
    pipe = EmoGenPipeline.from_pretrained(folder).to(resolve_device(device))
    pipe.set_progress_bar_config(disable=True)  # one bar over images instead
    return pipe
