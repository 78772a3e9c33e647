"""The clients' layer methods (Lambda's layer versions), mixed into ``fnhost.client.Client`` and
``AsyncClient``; each builds its request here and calls the client's ``_call``."""

from __future__ import annotations

from typing import Any

from .v1 import fnhost_pb2 as pb


def _publish(name: str, zip_file: bytes, description: str, runtimes: list[str] | None,
             architectures: list[str] | None, license_info: str) -> tuple[str, Any]:
    return "PublishLayerVersion", pb.PublishLayerVersionRequest(
        layer_name=name, zip_file=zip_file, description=description, compatible_runtimes=runtimes or [],
        compatible_architectures=architectures or [], license_info=license_info)


def _get(name: str, version: int, arn: str) -> tuple[str, Any]:
    return "GetLayerVersion", pb.GetLayerVersionRequest(layer_name=name, version=version, arn=arn)


class LayerCalls:
    """Blocking layer methods (``Client``). Each raises the ``fnhost.errors.ApiError`` the daemon answered."""

    def _call(self, method: str, request: Any) -> Any:
        raise NotImplementedError

    def publish_layer_version(self, name: str, zip_file: bytes, *, description: str = "",
                              compatible_runtimes: list[str] | None = None,
                              compatible_architectures: list[str] | None = None,
                              license_info: str = "") -> pb.LayerVersion:
        """``zip_file``: the layer's zip; its contents appear under /opt (python/, nodejs/, bin/ …)."""
        return self._call(*_publish(name, zip_file, description, compatible_runtimes, compatible_architectures,
                                    license_info))

    def list_layer_versions(self, name: str, *, compatible_runtime: str = "") -> list[pb.LayerVersion]:
        """Newest first; deleted versions are not listed."""
        return list(self._call("ListLayerVersions", pb.ListLayerVersionsRequest(
            layer_name=name, compatible_runtime=compatible_runtime)).layer_versions)

    def get_layer_version(self, name: str = "", version: int = 0, *, arn: str = "") -> pb.LayerVersion:
        """By name and version, or by the version's ARN."""
        return self._call(*_get(name, version, arn))

    def delete_layer_version(self, name: str, version: int) -> None:
        self._call("DeleteLayerVersion", pb.DeleteLayerVersionRequest(layer_name=name, version=version))

    def list_layers(self, *, compatible_runtime: str = "") -> list[pb.LayerVersion]:
        """Each layer's newest version."""
        return list(self._call("ListLayers", pb.ListLayersRequest(compatible_runtime=compatible_runtime)).layers)


class AsyncLayerCalls:
    """The same methods for ``AsyncClient``."""

    async def _call(self, method: str, request: Any) -> Any:
        raise NotImplementedError

    async def publish_layer_version(self, name: str, zip_file: bytes, *, description: str = "",
                                    compatible_runtimes: list[str] | None = None,
                                    compatible_architectures: list[str] | None = None,
                                    license_info: str = "") -> pb.LayerVersion:
        return await self._call(*_publish(name, zip_file, description, compatible_runtimes,
                                          compatible_architectures, license_info))

    async def list_layer_versions(self, name: str, *, compatible_runtime: str = "") -> list[pb.LayerVersion]:
        return list((await self._call("ListLayerVersions", pb.ListLayerVersionsRequest(
            layer_name=name, compatible_runtime=compatible_runtime))).layer_versions)

    async def get_layer_version(self, name: str = "", version: int = 0, *, arn: str = "") -> pb.LayerVersion:
        return await self._call(*_get(name, version, arn))

    async def delete_layer_version(self, name: str, version: int) -> None:
        await self._call("DeleteLayerVersion", pb.DeleteLayerVersionRequest(layer_name=name, version=version))

    async def list_layers(self, *, compatible_runtime: str = "") -> list[pb.LayerVersion]:
        return list((await self._call("ListLayers", pb.ListLayersRequest(
            compatible_runtime=compatible_runtime))).layers)
