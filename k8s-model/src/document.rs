//! Reading and writing manifest streams: multi-document YAML, JSON (which is YAML), and
//! `kind: List` (what `kubectl get -o yaml` prints), so one reader serves `check`, `inject` and
//! anything else that takes "the output of kubectl kustomize / helm template / kubectl get".

use serde::Deserialize;
use serde_json::Value;

/// The input cannot be read as manifests at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("document {index}: not YAML or JSON: {source}")]
    Syntax {
        index: usize,
        source: serde_yaml::Error,
    },
}

/// How a stream was written, so a rewrite can answer in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON input starts with `{` or `[` (after blanks); anything else is YAML.
    pub fn detect(text: &str) -> Format {
        match text.trim_start().chars().next() {
            Some('{') | Some('[') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Every document of the stream, in order. Empty documents (a stray `---`, comments only) are
/// skipped; a `kind: List` stays one document (see [`for_each_object`]).
pub fn read_documents(text: &str) -> Result<Vec<Value>, ReadError> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|source| ReadError::Syntax {
            index: i + 1,
            source,
        })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Writes documents back: YAML separated by `---`, or, for JSON input, pretty JSON (one
/// document as itself; several as a `kind: List`, the only way JSON holds many objects).
pub fn write_documents(docs: &[Value], format: Format) -> String {
    match format {
        Format::Json => {
            let value = match docs {
                [one] => one.clone(),
                many => serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": many,
                }),
            };
            let mut s = serde_json::to_string_pretty(&value).expect("a Value always serialises");
            s.push('\n');
            s
        }
        Format::Yaml => {
            let mut out = String::new();
            for (i, doc) in docs.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_yaml::to_string(doc).expect("a Value always serialises"));
            }
            out
        }
    }
}

/// Calls `f` on every object of a document: the document itself, or each item of a
/// `kind: List` (nested Lists too).
pub fn for_each_object<'a>(doc: &'a Value, f: &mut impl FnMut(&'a Value)) {
    if is_list(doc) {
        if let Some(items) = doc.get("items").and_then(Value::as_array) {
            for item in items {
                for_each_object(item, f);
            }
        }
    } else {
        f(doc);
    }
}

/// [`for_each_object`], for rewriting in place.
pub fn for_each_object_mut(doc: &mut Value, f: &mut impl FnMut(&mut Value)) {
    if is_list(doc) {
        if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            for item in items {
                for_each_object_mut(item, f);
            }
        }
    } else {
        f(doc);
    }
}

/// `kind: List`, and the typed lists `kubectl get -o yaml` prints (`DeploymentList`, ...).
fn is_list(doc: &Value) -> bool {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    (kind == "List" || kind.ends_with("List")) && doc.get("items").is_some_and(Value::is_array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_streams_yield_every_object() {
        let text = "\
apiVersion: v1
kind: List
items:
- {kind: Service, metadata: {name: a}}
- {kind: List, items: [{kind: Pod, metadata: {name: b}}]}
---
---
# only a comment
---
kind: ConfigMap
metadata: {name: c}
";
        let docs = read_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        let mut names = Vec::new();
        for d in &docs {
            for_each_object(d, &mut |o| {
                names.push(o["metadata"]["name"].as_str().unwrap().to_string())
            });
        }
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn json_is_read_and_answered_in_kind() {
        let text = r#"{"kind": "Pod", "metadata": {"name": "p", "z": 1, "a": 2}}"#;
        assert_eq!(Format::detect(text), Format::Json);
        let docs = read_documents(text).unwrap();
        let out = write_documents(&docs, Format::Json);
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, docs[0]);
        // Input order is kept, not sorted.
        assert!(out.find("\"z\"").unwrap() < out.find("\"a\"").unwrap());
    }

    #[test]
    fn syntax_errors_name_the_document() {
        let err = read_documents("kind: Pod\n---\nkind: [oops\n").unwrap_err();
        assert!(err.to_string().starts_with("document 2:"), "{err}");
    }
}
