//! Serves xterm.js from Debian's `node-xterm` package. Debian bookworm's `libjs-xterm` ships a
//! browser file that only `require`s the CommonJS modules, so ocaas wraps those modules (every
//! `lib/**/*.js` but tests) into one browser script with a small `require` of its own, once.

use std::collections::BTreeMap;
use std::path::Path;

/// The module ids (paths under `lib/` without `.js`) and sources of a CommonJS package.
fn modules(lib: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![lib.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".js") && !name.ends_with(".test.js") {
                let relative = path.strip_prefix(lib).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                found.insert(relative.trim_end_matches(".js").to_owned(), std::fs::read_to_string(&path)?);
            }
        }
    }
    Ok(found)
}

const RUNTIME: &str = r#"
  var cache = {};
  function resolve(from, request) {
    var parts = from.split('/');
    parts.pop();
    request.replace(/\.js$/, '').split('/').forEach(function (p) {
      if (p === '..') parts.pop(); else if (p !== '.') parts.push(p);
    });
    var id = parts.join('/');
    if (defs[id]) return id;
    if (defs[id + '/index']) return id + '/index';
    throw new Error('xterm bundle: cannot find ' + request + ' from ' + from);
  }
  function load(id) {
    if (cache[id]) return cache[id].exports;
    var module = { exports: {} };
    cache[id] = module;
    defs[id].call(module.exports, module.exports, function (r) { return load(resolve(id, r)); }, module);
    return module.exports;
  }
  window.Terminal = load('public/Terminal').Terminal;
  window.XtermFit = defs['addons/fit/fit'] ? load('addons/fit/fit') : null;
"#;

/// One browser script defining `window.Terminal` (and `window.XtermFit`), from `<dir>/lib`.
pub fn xterm_bundle(dir: &Path) -> std::io::Result<String> {
    let modules = modules(&dir.join("lib"))?;
    if !modules.contains_key("public/Terminal") {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "lib/public/Terminal.js is missing"));
    }
    let mut out = String::from("// xterm.js from Debian's node-xterm, wrapped for the browser by ocaas.\n(function () {\n  var defs = {\n");
    for (id, source) in &modules {
        let source = source.replace("//# sourceMappingURL=", "// (source map not served) ");
        out.push_str(&format!("  {}: function (exports, require, module) {{\n{source}\n  }},\n", serde_json::to_string(id).unwrap_or_default()));
    }
    out.push_str("  };\n");
    out.push_str(RUNTIME);
    out.push_str("})();\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_wrapped_with_relative_requires_resolved_at_run_time() {
        let dir = std::env::temp_dir().join(format!("ocaas-cjs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("lib/public")).unwrap();
        std::fs::write(dir.join("lib/public/Terminal.js"), "exports.Terminal = require('../core').name;").unwrap();
        std::fs::write(dir.join("lib/core.js"), "exports.name = 'core';").unwrap();
        std::fs::write(dir.join("lib/core.test.js"), "require('chai');").unwrap();
        let bundle = xterm_bundle(&dir).unwrap();
        assert!(bundle.contains("\"public/Terminal\": function"));
        assert!(bundle.contains("\"core\": function"));
        assert!(!bundle.contains("chai"), "tests are left out");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(xterm_bundle(&dir).is_err());
    }
}
