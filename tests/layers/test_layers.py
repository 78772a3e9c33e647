"""Layers end to end: boto3 against a real daemon, real Python and Node workers under /opt."""

from __future__ import annotations

import json

import pytest

from tests.conftest import unique, zipped

from .conftest import call, make_probe, publish

NODE_APP = '''
exports.handler = async () => {
  const greet = require('greet');
  return { greeting: greet('Ada'), layersDir: process.env.FNHOST_LAYERS_DIR };
};
'''


def test_python_function_imports_a_package_from_a_layer(lam) -> None:
    layer = publish(lam, {"python/layerpkg/__init__.py": "VALUE = 'from the layer'\n",
                          "bin/layer-tool": "#!/bin/sh\necho tool ran\n"},
                    Description="a package", CompatibleRuntimes=["python3.12"])
    assert layer["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert layer["Version"] == 1 and layer["LayerVersionArn"].endswith(":1")
    name = make_probe(lam, [layer["LayerVersionArn"]])
    config = lam.get_function_configuration(FunctionName=name)
    assert [entry["Arn"] for entry in config["Layers"]] == [layer["LayerVersionArn"]]
    assert config["Layers"][0]["CodeSize"] == layer["Content"]["CodeSize"] > 0
    out = call(lam, name, {"import": "layerpkg", "listdir": "/opt"})
    assert out["value"] == "from the layer"
    assert out["layers_dir"] == "/opt"  # the shared daemon's workers have mount namespaces (root, bwrap)
    assert out["listed"] == ["bin", "python"]  # nothing of the host's /opt
    assert out["path"].endswith(":/opt/bin") and out["ld"].endswith("/opt/lib")


def test_layer_bin_is_on_path_and_layers_are_read_only(lam) -> None:
    tool = "#!/bin/sh\necho tool ran\n"
    data = zipped({"python/readonly.py": "VALUE = 1\n"})
    import io
    import zipfile
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as z:  # an executable, as `zip` records one
        info = zipfile.ZipInfo("bin/layer-tool")
        info.external_attr = 0o100755 << 16
        z.writestr(info, tool)
    layer = lam.publish_layer_version(LayerName=unique("bin"), Content={"ZipFile": buf.getvalue()})
    name = make_probe(lam, [layer["LayerVersionArn"]])
    assert call(lam, name, {"run": "layer-tool"})["ran"] == "tool ran"
    for path in ("/opt/python/readonly.py", "/opt/python/new.py", "/opt/new.txt"):
        out = call(lam, name, {"write": path})
        assert out["wrote"] is False, path
    assert call(lam, name, {"import": "readonly"})["value"] == 1


def test_node_function_requires_a_module_from_a_layer(lam) -> None:
    greet = "module.exports = (n) => `Hello, ${n}, from a layer`;\n"
    layer = publish(lam, {"nodejs/node_modules/greet/index.js": greet})
    name = make_probe(lam, [layer["LayerVersionArn"]], runtime="nodejs20.x", handler="index.handler",
                      files={"index.js": NODE_APP})
    out = call(lam, name)
    assert out == {"greeting": "Hello, Ada, from a layer", "layersDir": "/opt"}


def test_a_later_layer_overrides_an_earlier_ones_file(lam) -> None:
    first = publish(lam, {"python/shared.py": "VALUE = 'first'\n", "python/only_first.py": "VALUE = 'one'\n"})
    second = publish(lam, {"python/shared.py": "VALUE = 'second'\n", "python/only_second.py": "VALUE = 'two'\n"})
    name = make_probe(lam, [first["LayerVersionArn"], second["LayerVersionArn"]])
    assert call(lam, name, {"import": "shared"})["value"] == "second"
    assert call(lam, name, {"import": "only_first"})["value"] == "one"
    assert call(lam, name, {"import": "only_second"})["value"] == "two"
    # The other order: the first layer's file wins.
    lam.update_function_configuration(FunctionName=name, Layers=[second["LayerVersionArn"], first["LayerVersionArn"]])
    assert call(lam, name, {"import": "shared"})["value"] == "first"


def test_layer_limits_and_unknown_arns_are_refused_with_the_sdks_exceptions(lam) -> None:
    arns = [publish(lam, {f"python/m{i}.py": "VALUE = 1\n"})["LayerVersionArn"] for i in range(6)]
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="more than 5 layers"):
        make_probe(lam, arns)
    unknown = arns[0].rsplit(":", 1)[0] + ":99"
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not exist"):
        make_probe(lam, [unknown])
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        make_probe(lam, ["not-an-arn"])
    name = make_probe(lam, arns[:5])
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not exist"):
        lam.update_function_configuration(FunctionName=name, Layers=[unknown])
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName=arns[0].split(":")[6], VersionNumber=99)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version_by_arn(Arn=unknown)
    assert call(lam, name, {"import": "m4"})["value"] == 1


def test_publish_list_get_and_version_numbers_never_reused(lam) -> None:
    layer = unique("numbered")
    one = publish(lam, {"a.txt": "1"}, name=layer, CompatibleRuntimes=["python3.12"], LicenseInfo="MIT")
    two = publish(lam, {"a.txt": "2"}, name=layer, CompatibleRuntimes=["nodejs20.x"])
    assert (one["Version"], two["Version"]) == (1, 2)
    assert one["LayerArn"] == two["LayerArn"] and one["LayerArn"].endswith(f":layer:{layer}")
    listed = lam.list_layer_versions(LayerName=layer)["LayerVersions"]
    assert [v["Version"] for v in listed] == [2, 1]
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=layer, CompatibleRuntime="python3.12")[
        "LayerVersions"]] == [1]
    got = lam.get_layer_version_by_arn(Arn=one["LayerVersionArn"])
    assert got["LicenseInfo"] == "MIT" and got["Content"]["CodeSha256"] == one["Content"]["CodeSha256"]
    newest = {entry["LayerName"]: entry for entry in lam.list_layers()["Layers"]}
    assert newest[layer]["LatestMatchingVersion"]["Version"] == 2
    lam.delete_layer_version(LayerName=layer, VersionNumber=2)
    lam.delete_layer_version(LayerName=layer, VersionNumber=2)  # again: nothing to do, as on Lambda
    assert publish(lam, {"a.txt": "3"}, name=layer)["Version"] == 3  # 2 is never given again
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=layer)["LayerVersions"]] == [3, 1]


def test_publishing_a_function_version_freezes_its_layers(lam) -> None:
    layer = unique("frozen")
    one = publish(lam, {"python/which.py": "VALUE = 'one'\n"}, name=layer)
    two = publish(lam, {"python/which.py": "VALUE = 'two'\n"}, name=layer)
    name = make_probe(lam, [one["LayerVersionArn"]])
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_configuration(FunctionName=name, Layers=[two["LayerVersionArn"]])
    assert call(lam, name, {"import": "which"})["value"] == "two"
    assert call(lam, name, {"import": "which"}, Qualifier=version)["value"] == "one"
    frozen = lam.get_function_configuration(FunctionName=name, Qualifier=version)
    assert [entry["Arn"] for entry in frozen["Layers"]] == [one["LayerVersionArn"]]
    assert lam.publish_version(FunctionName=name)["Version"] != version  # the layers changed: a new version
    lam.update_function_configuration(FunctionName=name, Layers=[])
    assert "Layers" not in lam.get_function_configuration(FunctionName=name)
    assert call(lam, name)["layers_dir"] is None


def test_the_aws_cli_publishes_and_lists_layers(daemon, tmp_path) -> None:
    from tests.lambda_api.test_aws_cli import _aws

    content = tmp_path / "layer.zip"
    content.write_bytes(zipped({"python/clilayer.py": "VALUE = 'cli'\n"}))
    layer = unique("awscli")
    out = json.loads(_aws(daemon.http_url, tmp_path, "publish-layer-version", "--layer-name", layer,
                          "--zip-file", f"fileb://{content}", "--compatible-runtimes", "python3.12").stdout)
    assert out["Version"] == 1
    listed = json.loads(_aws(daemon.http_url, tmp_path, "list-layer-versions", "--layer-name", layer).stdout)
    assert [v["LayerVersionArn"] for v in listed["LayerVersions"]] == [out["LayerVersionArn"]]
    _aws(daemon.http_url, tmp_path, "delete-layer-version", "--layer-name", layer, "--version-number", "1")
    listed = json.loads(_aws(daemon.http_url, tmp_path, "list-layer-versions", "--layer-name", layer).stdout)
    assert listed["LayerVersions"] == []



def test_a_function_without_layers_sees_an_empty_read_only_opt(lam) -> None:
    name = make_probe(lam, [])
    out = call(lam, name, {"listdir": "/opt", "write": "/opt/new.txt"})
    assert out["layers_dir"] is None and out["listed"] == [] and out["wrote"] is False
