//! The objects queries return: [`Object`] (a class name and named property values) and
//! [`Value`], made from their wire form, readable by name and printable as JSON. Uses
//! only the generated wire types.

use ferry_proto::v1 as pb;

/// A property value of a query object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// No value.
    Null,
    /// Text.
    String(String),
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// A boolean.
    Boolean(bool),
    /// An embedded object (an error record, or an event's `TargetInstance`).
    Object(Object),
    /// A list of texts (a job's `headers` and `notify_command`, a handler's `argv`).
    List(Vec<String>),
}

/// An object a query returned: a `Job`, `File`, `Handler`, or an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Its class, e.g. `Job` or `__InstanceModificationEvent`.
    pub class: String,
    /// Its properties in order.
    pub properties: Vec<(String, Value)>,
}

impl Object {
    /// The value of property `name` (case-insensitive), `None` if the object has none.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The text of property `name`, if it is text.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer of property `name`, if it is one.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Value::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    /// The embedded object of property `name`, if it is one.
    pub fn get_object(&self, name: &str) -> Option<&Object> {
        match self.get(name) {
            Some(Value::Object(o)) => Some(o),
            _ => None,
        }
    }

    pub(crate) fn from_wire(o: pb::Object) -> Object {
        Object {
            class: o.class_name,
            properties: o
                .properties
                .into_iter()
                .map(|p| (p.name, value_from_wire(p.value)))
                .collect(),
        }
    }

    pub(crate) fn from_json(class: &str, v: serde_json::Value) -> Object {
        let properties = match v {
            serde_json::Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| {
                    let value = json_value(&k, v);
                    (k, value)
                })
                .collect(),
            _ => Vec::new(),
        };
        Object {
            class: class.into(),
            properties,
        }
    }
}

fn json_value(name: &str, v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Integer)
            .unwrap_or_else(|| Value::Real(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::List(
            items
                .into_iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        ),
        o @ serde_json::Value::Object(_) => Value::Object(Object::from_json(name, o)),
    }
}

impl serde::Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.properties.len()))?;
        for (k, v) in &self.properties {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn value_from_wire(v: Option<pb::Value>) -> Value {
    use pb::value::Kind;
    match v.and_then(|v| v.kind) {
        None => Value::Null,
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::IntegerValue(i)) => Value::Integer(i),
        Some(Kind::RealValue(r)) => Value::Real(r),
        Some(Kind::BooleanValue(b)) => Value::Boolean(b),
        Some(Kind::ObjectValue(o)) => Value::Object(Object::from_wire(o)),
        Some(Kind::StringListValue(l)) => Value::List(l.values),
    }
}
