//! The JSON shapes shared with the other SDKs (clients/python/README.md, "Wire format").
//!
//! A run's `input` is a JSON array of positional arguments. A Rust workflow takes one typed
//! input `I`: it is written as the one-element array `[input]` (a Python workflow with one
//! parameter reads it as that argument), and read back with [`decode_input`]'s rules, which
//! also accept what Python, psql and schedules write.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// A value as JSON, or [`Error::Serialization`] naming `what`.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Serialization(format!("{what} is not JSON: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Serialization(format!("{what} has another shape: {e}")))
}

/// A run's input for one typed argument: `[input]`; `()` and `None` (JSON null) are no
/// arguments, `[]`, as Python, Node, psql and schedules write them.
pub(crate) fn encode_input<I: Serialize + ?Sized>(input: &I) -> Result<Value> {
    Ok(match encode(input, "the workflow's input")? {
        Value::Null => Value::Array(vec![]),
        v => Value::Array(vec![v]),
    })
}

/// A run's input for several positional arguments (`args` must serialize to a JSON array):
/// for a workflow of another SDK with more than one parameter.
pub(crate) fn encode_args<A: Serialize + ?Sized>(args: &A) -> Result<Value> {
    match encode(args, "the workflow's arguments")? {
        v @ Value::Array(_) => Ok(v),
        other => Err(Error::Serialization(format!(
            "the workflow's arguments must be a JSON array (a tuple or a Vec), not {other}"))),
    }
}

/// The typed input of a Rust workflow, from any input the wire format allows:
/// - `NULL`: `I` read from `null` (`()` or an `Option`);
/// - `[]` or `{}` (no arguments): `I` read from `null`; if that fails, from the value itself;
/// - `[x]` (one argument): `I` read from `x`; if that fails, from `[x]` itself;
/// - `[a, b, ...]` (several arguments): `I` read from the whole array (a tuple or a Vec);
/// - `{"args": [...], "kwargs": {}}` (Python keyword-only arguments): as `args` when there are
///   no kwargs, as the `kwargs` object when there are no args;
/// - any other value (from psql or a schedule): `I` read from it.
pub fn decode_input<I: DeserializeOwned>(input: Option<Value>) -> Result<I> {
    let what = "the workflow's input";
    match input {
        None | Some(Value::Null) => decode(Value::Null, what),
        Some(v) if v.as_array().is_some_and(|a| a.is_empty()) || v.as_object().is_some_and(|o| o.is_empty()) => {
            match serde_json::from_value::<I>(Value::Null) {
                Ok(i) => Ok(i),
                Err(first) => serde_json::from_value(v)
                    .map_err(|_| Error::Serialization(format!("{what} has another shape: {first}"))),
            }
        }
        Some(Value::Array(mut items)) if items.len() == 1 => {
            let only = items.pop().unwrap();
            match serde_json::from_value::<I>(only.clone()) {
                Ok(v) => Ok(v),
                Err(first) => serde_json::from_value(Value::Array(vec![only]))
                    .map_err(|_| Error::Serialization(format!("{what} has another shape: {first}"))),
            }
        }
        Some(v @ Value::Array(_)) => decode(v, what),
        Some(Value::Object(mut o)) if !o.is_empty() && o.keys().all(|k| k == "args" || k == "kwargs") => {
            let args = o.remove("args").unwrap_or(Value::Array(vec![]));
            let kwargs = o.remove("kwargs").unwrap_or(Value::Object(Default::default()));
            let no_args = args.as_array().map_or(true, |a| a.is_empty());
            let no_kwargs = kwargs.as_object().map_or(true, |k| k.is_empty());
            if no_kwargs {
                decode_input(Some(args))
            } else if no_args {
                decode(kwargs, what)
            } else {
                Err(Error::Serialization(format!(
                    "{what} has both positional and keyword arguments: a Rust workflow takes one input")))
            }
        }
        Some(other) => decode(other, what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Order {
        id: String,
        qty: i32,
    }

    #[test]
    fn one_argument_round_trips_as_a_one_element_array() {
        let o = Order { id: "o-1".into(), qty: 2 };
        let v = encode_input(&o).unwrap();
        assert_eq!(v, json!([{"id": "o-1", "qty": 2}]));
        assert_eq!(decode_input::<Order>(Some(v)).unwrap(), o);
    }

    #[test]
    fn python_shapes_are_read() {
        assert_eq!(decode_input::<(String, i32)>(Some(json!(["a", 5]))).unwrap(), ("a".to_string(), 5));
        assert_eq!(decode_input::<i32>(Some(json!({"args": [7], "kwargs": {}}))).unwrap(), 7);
        assert_eq!(decode_input::<Order>(Some(json!({"args": [], "kwargs": {"id": "x", "qty": 1}}))).unwrap().qty, 1);
        assert_eq!(decode_input::<Order>(Some(json!({"id": "x", "qty": 3}))).unwrap().qty, 3);
        assert_eq!(decode_input::<Vec<i32>>(Some(json!([5]))).unwrap(), vec![5]);
        assert_eq!(decode_input::<()>(None).unwrap(), ());
        assert!(matches!(decode_input::<Order>(Some(json!([1]))), Err(Error::Serialization(_))));
    }

    #[test]
    fn no_arguments_is_an_empty_array() {
        assert_eq!(encode_input(&()).unwrap(), json!([]));
        assert_eq!(encode_input(&None::<i32>).unwrap(), json!([]));
        assert_eq!(encode_input(&Some(3)).unwrap(), json!([3]));
        decode_input::<()>(Some(json!([]))).unwrap();
        decode_input::<()>(Some(json!({}))).unwrap();
        decode_input::<()>(Some(json!({"args": [], "kwargs": {}}))).unwrap();
        assert_eq!(decode_input::<Option<i32>>(Some(json!([]))).unwrap(), None);
        assert_eq!(decode_input::<Vec<i32>>(Some(json!([]))).unwrap(), Vec::<i32>::new());
        assert!(decode_input::<std::collections::HashMap<String, i32>>(Some(json!({}))).unwrap().is_empty());
        assert!(matches!(decode_input::<Order>(Some(json!([]))), Err(Error::Serialization(_))));
    }

    #[test]
    fn args_must_be_an_array() {
        assert!(matches!(encode_args(&5), Err(Error::Serialization(_))));
        assert_eq!(encode_args(&("a", 1)).unwrap(), json!(["a", 1]));
    }
}
