"""The gRPC API's layer operations (Lambda's layer versions), mixed into ``grpc_server.Servicer``,
which gives each the same error translation as its other methods."""

from __future__ import annotations

from typing import Any

from ..control.layers import LayerVersion
from ..v1 import fnhost_pb2 as pb

METHODS = ("PublishLayerVersion", "ListLayerVersions", "GetLayerVersion", "DeleteLayerVersion", "ListLayers")


def layer_message(version: LayerVersion) -> pb.LayerVersion:
    return pb.LayerVersion(
        layer_name=version.name, version=version.version, layer_arn=version.layer_arn,
        layer_version_arn=version.arn, description=version.description, code_sha256=version.sha256,
        code_size=version.size, created_date=version.created, compatible_runtimes=version.compatible_runtimes,
        compatible_architectures=version.compatible_architectures, license_info=version.license_info)


class LayerServicer:
    """Layer RPCs; ``self.sup`` is the supervisor (control/layers.py ``SupervisorLayers``)."""

    sup: Any

    async def PublishLayerVersion(self, request: pb.PublishLayerVersionRequest, context: Any) -> pb.LayerVersion:
        return layer_message(await self.sup.publish_layer_version(
            request.layer_name, request.zip_file, description=request.description,
            runtimes=list(request.compatible_runtimes), architectures=list(request.compatible_architectures),
            license_info=request.license_info))

    async def ListLayerVersions(self, request: pb.ListLayerVersionsRequest,
                                context: Any) -> pb.ListLayerVersionsResponse:
        return pb.ListLayerVersionsResponse(layer_versions=[
            layer_message(v) for v in self.sup.layers.versions(
                request.layer_name, request.compatible_runtime, request.compatible_architecture)])

    async def GetLayerVersion(self, request: pb.GetLayerVersionRequest, context: Any) -> pb.LayerVersion:
        if request.arn:
            return layer_message(self.sup.layers.get_by_arn(request.arn))
        return layer_message(self.sup.layers.get(request.layer_name, request.version))

    async def DeleteLayerVersion(self, request: pb.DeleteLayerVersionRequest,
                                 context: Any) -> pb.DeleteLayerVersionResponse:
        await self.sup.delete_layer_version(request.layer_name, request.version)
        return pb.DeleteLayerVersionResponse()

    async def ListLayers(self, request: pb.ListLayersRequest, context: Any) -> pb.ListLayersResponse:
        return pb.ListLayersResponse(layers=[
            layer_message(v) for v in self.sup.layers.latest(request.compatible_runtime,
                                                             request.compatible_architecture)])
