"""The events tracetune emits: a new dataset version, and a trained adapter. Any producer of the same
event (another pipeline, `prefect event emit`) starts the same deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.events import emit_event

from schemas.dataset import event_payload

DATASET_CREATED = "tracetune.dataset.created"
DATASET_APPROVED = "tracetune.dataset.approved"
ADAPTER_TRAINED = "tracetune.adapter.trained"


def announce_dataset(folder: str | Path, db: str | None, event: str = DATASET_CREATED) -> dict[str, Any]:
    """Emit `event` for a dataset version folder (resource `tracetune.dataset.<name>.<version>`); returns
    the payload (path, db, name, version, train_rows, holdout_rows, manifest_sha256, content_hash)."""
    payload = event_payload(Path(folder), db)
    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"tracetune.dataset.{payload['name']}.{payload['version']}",
            "prefect.resource.name": f"{payload['name']} v{payload['version']}",
            "tracetune.dataset.name": str(payload["name"]),
            "tracetune.dataset.version": str(payload["version"]),
        },
        payload=payload,
    )
    return payload


def announce_adapter(adapter: str, dataset: str, db: str | None, name: str, version: int | None) -> dict[str, Any]:
    """Emit `tracetune.adapter.trained` (resource `tracetune.adapter.<name>.<folder>`) for the evaluate deployment."""
    payload = {"adapter": adapter, "dataset": dataset, "db": db, "name": name, "version": version}
    emit_event(
        event=ADAPTER_TRAINED,
        resource={"prefect.resource.id": f"tracetune.adapter.{name}.{Path(adapter).name}"},
        payload=payload,
    )
    return payload
