"""Lambda's per-runtime search paths into layers: Ruby's /opt/ruby/lib and /opt/ruby/gems/<ver>,
Java's /opt/java/lib jars (Python's and Node's are in test_layers.py)."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

from tests.conftest import unique, zipped

from .conftest import ROLE, call

RUBY_APP = '''
require 'layered'

def handler(event:, context:)
  require 'layergem'
  { lib: Layered::VALUE, gem: LayerGem::VALUE, gem_path: ENV['GEM_PATH'] }
end
'''

GEMSPEC = '''Gem::Specification.new do |s|
  s.name = 'layergem'
  s.version = '1.0.0'
  s.summary = 'a gem shipped in a layer'
  s.authors = ['fnhost tests']
  s.files = ['lib/layergem.rb']
  s.require_paths = ['lib']
end
'''


def _ruby_api() -> str:
    return subprocess.run(["ruby", "-e", "require 'rbconfig'; print RbConfig::CONFIG['ruby_version']"],
                          capture_output=True, text=True, check=True, timeout=30).stdout


def test_ruby_finds_a_layers_lib_and_gems(lam) -> None:
    gems = f"ruby/gems/{_ruby_api()}"
    layer = lam.publish_layer_version(LayerName=unique("rb"), Content={"ZipFile": zipped({
        "ruby/lib/layered.rb": "module Layered\n  VALUE = 'ruby lib'\nend\n",
        f"{gems}/gems/layergem-1.0.0/lib/layergem.rb": "module LayerGem\n  VALUE = 'ruby gem'\nend\n",
        f"{gems}/specifications/layergem-1.0.0.gemspec": GEMSPEC,
    })})
    name = unique("rbfn")
    lam.create_function(FunctionName=name, Runtime="ruby3.2", Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": zipped({"app.rb": RUBY_APP})}, Layers=[layer["LayerVersionArn"]])
    out = call(lam, name)
    assert out["lib"] == "ruby lib" and out["gem"] == "ruby gem"
    assert out["gem_path"].startswith(f"/opt/{gems}")


JAVA_APP = '''
package app;

import java.util.Map;

public class Handler {
    public String handleRequest(Map<String, Object> event) throws Exception {
        return (String) Class.forName("layered.Greeting").getMethod("hello").invoke(null);
    }
}
'''


def _jar(tmp: Path) -> bytes:
    src = tmp / "src" / "layered"
    src.mkdir(parents=True)
    (src / "Greeting.java").write_text(
        "package layered;\npublic class Greeting { public static String hello() { return \"from a layer jar\"; } }\n")
    out = tmp / "classes"
    subprocess.run(["javac", "-d", str(out), str(src / "Greeting.java")], check=True, timeout=120)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(out / "layered" / "Greeting.class", "layered/Greeting.class")
    return buf.getvalue()


def test_java_loads_classes_from_a_layers_jars(lam, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("java/lib/greeting.jar", _jar(tmp_path))
    layer = lam.publish_layer_version(LayerName=unique("jar"), Content={"ZipFile": buf.getvalue()})
    name = unique("javafn")
    lam.create_function(FunctionName=name, Runtime="java17", Handler="app.Handler::handleRequest", Role=ROLE,
                        Code={"ZipFile": zipped({"app/Handler.java": JAVA_APP})}, Layers=[layer["LayerVersionArn"]],
                        Timeout=30, MemorySize=512)
    assert call(lam, name) == "from a layer jar"
