//! The REST port: TensorFlow Serving's `/v1/models/...` API, the Open Inference Protocol's
//! `/v2/...` API (with Triton's binary tensor extension, which Triton's HTTP client uses by
//! default), and Prometheus metrics. One handler routes by path, since TensorFlow Serving's
//! verbs (`:predict`) sit inside a path segment.

use crate::convert::{self, from_json, from_json_rows, kserve_dims, kserve_dtype, write_json};
use crate::error::{invalid, Result, ServeError};
use crate::json::{self, Json, Number};
use crate::repository::VersionChoice;
use crate::servable::Servable;
use crate::{kserve, tfs, Shared};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use lathe_ir::Tensor;
use std::fmt::Write as _;
use std::sync::Arc;

/// The header giving the length of the JSON part of a body with binary tensors.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The REST router.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
            let shared = shared.clone();
            async move { handle(&shared, method, uri, headers, body).await }
        },
    )
}

/// A finished response: status, content type, headers, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(text: String) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            headers: vec![],
            body: text.into_bytes(),
        }
    }

    fn error(e: &ServeError) -> Reply {
        let mut text = String::from("{\"error\":");
        json::write_str(&mut text, &e.to_string());
        text.push('}');
        Reply {
            status: e.http_status(),
            ..Reply::json(text)
        }
    }

    fn into_response(self) -> Response {
        let mut r = Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(header::CONTENT_TYPE, self.content_type);
        for (k, v) in self.headers {
            r = r.header(k, v);
        }
        r.body(Body::from(self.body)).expect("a valid response")
    }
}

async fn handle(
    shared: &Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let max = shared.repo.limits().max_request_bytes;
    let body = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            return Reply::error(&ServeError::TooLarge(format!(
                "the request body is larger than the server's limit of {max} bytes"
            )))
            .into_response()
        }
    };
    let reply = route(shared, &method, &path, &headers, &body).await;
    reply.unwrap_or_else(|e| Reply::error(&e)).into_response()
}

async fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    if let Some(rest) = path.strip_prefix("/v1/models/") {
        return tf_route(shared, get, post, rest, body).await;
    }
    if path == "/v2" || path.starts_with("/v2/") {
        return v2_route(shared, get, post, &path[3..], headers, body).await;
    }
    if path == "/monitoring/prometheus/metrics" && get {
        return Ok(Reply {
            content_type: "text/plain; version=0.0.4",
            ..Reply::json(shared.metrics.render(&shared.repo))
        });
    }
    Err(ServeError::NotFound(format!(
        "no such endpoint: {method} {path}"
    )))
}

// ---------------------------------------------------------------------------------------
// TensorFlow Serving

/// `/v1/models/` + `NAME[/versions/N|/labels/L][/metadata|:predict|:classify|:regress]`.
async fn tf_route(
    shared: &Shared,
    get: bool,
    post: bool,
    rest: &str,
    body: &[u8],
) -> Result<Reply> {
    let (rest, verb) = match rest.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r, Some(v)),
        _ => (rest, None),
    };
    let (rest, metadata) = match rest.strip_suffix("/metadata") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (name, choice) = match parts.as_slice() {
        [name] => (*name, VersionChoice::Newest),
        [name, "versions", v] => (
            *name,
            VersionChoice::Number(
                v.parse()
                    .map_err(|_| invalid!("version `{v}` is not a number"))?,
            ),
        ),
        [name, "labels", l] => (*name, VersionChoice::Label(l.to_string())),
        _ => {
            return Err(ServeError::NotFound(format!(
                "no such endpoint: /v1/models/{rest}"
            )))
        }
    };
    let name = percent_decode(name);
    match (verb, metadata, get, post) {
        (None, false, true, _) => shared.observe(&name, "tfs_rest_status", async { tf_status(shared, &name, &choice) }).await,
        (None, true, true, _) => shared
            .observe(&name, "tfs_rest_metadata", async {
                let s = shared.repo.get(&name, &choice)?;
                Ok(Reply::json(tf_metadata_json(&s)))
            })
            .await,
        (Some("predict"), false, _, true) => shared.observe(&name, "tfs_rest_predict", tf_predict(shared, &name, &choice, body)).await,
        (Some(v @ ("classify" | "regress")), false, _, true) => {
            let api = if v == "classify" { "tfs_rest_classify" } else { "tfs_rest_regress" };
            shared.observe(&name, api, tf_examples(shared, &name, &choice, v, body)).await
        }
        (Some(v), _, _, _) if !["predict", "classify", "regress"].contains(&v) => {
            Err(ServeError::NotFound(format!("`:{v}` is not a verb of the API (`:predict`, `:classify`, `:regress`)")))
        }
        _ => Err(invalid!("wrong HTTP method for this endpoint (GET for status and metadata, POST for :predict, :classify and :regress)")),
    }
}

fn tf_status(shared: &Shared, name: &str, choice: &VersionChoice) -> Result<Reply> {
    let spec = lathe_proto::tensorflow::serving::ModelSpec {
        name: name.to_string(),
        version_choice: match choice {
            VersionChoice::Newest => None,
            VersionChoice::Number(v) => {
                Some(lathe_proto::tensorflow::serving::model_spec::VersionChoice::Version(*v))
            }
            VersionChoice::Label(l) => Some(
                lathe_proto::tensorflow::serving::model_spec::VersionChoice::VersionLabel(
                    l.clone(),
                ),
            ),
        },
        signature_name: String::new(),
    };
    let status = tfs::status(&shared.repo, Some(&spec))?;
    let versions = (status.model_version_status.iter())
        .map(|v| {
            let state =
                lathe_proto::tensorflow::serving::model_version_status::State::try_from(v.state)
                    .map_or("UNKNOWN", |s| s.as_str_name());
            let st = v.status.clone().unwrap_or_default();
            let code = lathe_proto::tensorflow::error::Code::try_from(st.error_code)
                .map_or("UNKNOWN", |c| c.as_str_name());
            obj([
                ("version", text(v.version.to_string())),
                ("state", text(state)),
                (
                    "status",
                    obj([
                        ("error_code", text(code)),
                        ("error_message", text(st.error_message)),
                    ]),
                ),
            ])
        })
        .collect();
    Ok(Reply::json(
        obj([("model_version_status", Json::Arr(versions))]).to_text(),
    ))
}

/// A JSON object of these fields.
fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
    Json::Obj(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn text(s: impl Into<String>) -> Json {
    Json::Str(s.into())
}

/// The metadata response in proto3's JSON mapping, as TensorFlow Serving writes it.
fn tf_metadata_json(s: &Servable) -> String {
    let sig = tfs::signature_def(s);
    let infos = |m: &std::collections::HashMap<String, lathe_proto::tensorflow::TensorInfo>,
                 order: &[crate::servable::TensorInfo]| {
        Json::Obj(
            (order.iter())
                .map(|info| {
                    let t = &m[&info.name];
                    let dtype = lathe_proto::tensorflow::DataType::try_from(t.dtype)
                        .map_or("DT_INVALID", |d| d.as_str_name());
                    let shape = t.tensor_shape.clone().unwrap_or_default();
                    let dims = (shape.dim.iter())
                        .map(|d| obj([("size", text(d.size.to_string())), ("name", text(""))]))
                        .collect();
                    let value = obj([
                        ("dtype", text(dtype)),
                        (
                            "tensor_shape",
                            obj([
                                ("dim", Json::Arr(dims)),
                                ("unknown_rank", Json::Bool(shape.unknown_rank)),
                            ]),
                        ),
                        ("name", text(tfs::tensor_name(&info.name))),
                    ]);
                    (info.name.clone(), value)
                })
                .collect(),
        )
    };
    let signature = obj([
        ("inputs", infos(&sig.inputs, &s.inputs)),
        ("outputs", infos(&sig.outputs, &s.outputs)),
        ("method_name", text(tfs::PREDICT_METHOD)),
    ]);
    let defs = Json::Obj(vec![(s.signature.clone(), signature)]);
    obj([
        (
            "model_spec",
            obj([
                ("name", text(&s.name)),
                ("signature_name", text("")),
                ("version", text(s.version.to_string())),
            ]),
        ),
        (
            "metadata",
            obj([("signature_def", obj([("signature_def", defs)]))]),
        ),
    ])
    .to_text()
}

/// The request body as a JSON object.
fn body_object(body: &[u8]) -> Result<Json> {
    let v = Json::parse(body).map_err(|e| invalid!("{e}"))?;
    if !matches!(v, Json::Obj(_)) {
        return Err(invalid!(
            "the request body must be a JSON object, not {}",
            v.kind()
        ));
    }
    Ok(v)
}

fn signature_name(v: &Json) -> Result<&str> {
    match v.get("signature_name") {
        None => Ok(""),
        Some(Json::Str(s)) => Ok(s),
        Some(o) => Err(invalid!(
            "`signature_name` must be a string, not {}",
            o.kind()
        )),
    }
}

/// A TensorFlow Serving POST's body and the servable it names, its signature checked.
fn tf_request(
    shared: &Shared,
    name: &str,
    choice: &VersionChoice,
    body: &[u8],
) -> Result<(Json, Arc<Servable>)> {
    let v = body_object(body)?;
    let s = shared.repo.get(name, choice)?;
    s.check_signature(signature_name(&v)?)?;
    Ok((v, s))
}

async fn tf_predict(
    shared: &Shared,
    name: &str,
    choice: &VersionChoice,
    body: &[u8],
) -> Result<Reply> {
    let (v, s) = tf_request(shared, name, choice, body)?;
    let (rows, inputs) = match (v.get("instances"), v.get("inputs")) {
        (Some(instances), None) => {
            let Json::Arr(instances) = instances else {
                return Err(invalid!(
                    "`instances` must be a list, not {}",
                    instances.kind()
                ));
            };
            (Some(instances.len()), row_inputs(&s, instances)?)
        }
        (None, Some(inputs)) => (None, columnar_inputs(&s, inputs)?),
        (Some(_), Some(_)) => {
            return Err(invalid!(
                "the request has both `instances` and `inputs`; give one"
            ))
        }
        (None, None) => {
            return Err(invalid!(
                "the request has neither `instances` (row format) nor `inputs` (columnar format)"
            ))
        }
    };
    s.check_inputs(&inputs)?;
    let outputs = s.run(inputs, &[]).await?;
    let mut out = String::new();
    match rows {
        Some(n) => {
            if let Some((name, t)) = outputs.iter().find(|(_, t)| t.shape().first() != Some(&n)) {
                return Err(invalid!(
                    "output `{name}` has shape {:?}, not one row per instance ({n}); ask in columnar format (`inputs`)",
                    t.shape()
                ));
            }
            out.push_str("{\"predictions\":[");
            for row in 0..n {
                if row > 0 {
                    out.push(',');
                }
                match outputs.as_slice() {
                    [(_, t)] => write_row(&mut out, t, row),
                    many => {
                        out.push('{');
                        for (k, (name, t)) in many.iter().enumerate() {
                            if k > 0 {
                                out.push(',');
                            }
                            json::write_str(&mut out, name);
                            out.push(':');
                            write_row(&mut out, t, row);
                        }
                        out.push('}');
                    }
                }
            }
            out.push_str("]}");
        }
        None => {
            out.push_str("{\"outputs\":");
            match outputs.as_slice() {
                [(_, t)] => write_json(&mut out, t, 0, t.shape()),
                many => {
                    out.push('{');
                    for (k, (name, t)) in many.iter().enumerate() {
                        if k > 0 {
                            out.push(',');
                        }
                        json::write_str(&mut out, name);
                        out.push(':');
                        write_json(&mut out, t, 0, t.shape());
                    }
                    out.push('}');
                }
            }
            out.push('}');
        }
    }
    Ok(Reply::json(out))
}

/// Row `row` of `t` (its first axis).
fn write_row(out: &mut String, t: &Tensor, row: usize) {
    let dims = &t.shape()[1..];
    let per_row: usize = dims.iter().product();
    write_json(out, t, row * per_row, dims);
}

/// Whether a JSON object is a `{"b64": ...}` value rather than named inputs.
fn is_b64(v: &Json) -> bool {
    matches!(v, Json::Obj(f) if f.len() == 1 && f[0].0 == "b64")
}

/// Row format: each instance is one row of every input (named in an object, or the value of
/// the only input).
fn row_inputs(s: &Servable, instances: &[Json]) -> Result<Vec<(String, Tensor)>> {
    if instances.is_empty() {
        return Err(invalid!("`instances` is empty"));
    }
    let named = matches!(&instances[0], Json::Obj(_)) && !is_b64(&instances[0]);
    if !named && s.inputs.len() != 1 {
        return Err(invalid!(
            "model `{}` has {} inputs: each instance must be an object naming them",
            s.name,
            s.inputs.len()
        ));
    }
    s.inputs
        .iter()
        .map(|info| {
            let rows = instances
                .iter()
                .enumerate()
                .map(|(k, inst)| match (named, inst) {
                    (false, v) => Ok(v),
                    (true, o @ Json::Obj(_)) if !is_b64(o) => o
                        .get(&info.name)
                        .ok_or_else(|| invalid!("instance {k} has no input `{}`", info.name)),
                    (true, v) => Err(invalid!(
                        "instance {k} is {}, where the first was an object naming the inputs",
                        v.kind()
                    )),
                })
                .collect::<Result<Vec<&Json>>>()?;
            if named {
                if let Some((k, key)) = instances.iter().enumerate().find_map(|(k, inst)| {
                    let Json::Obj(f) = inst else { return None };
                    f.iter()
                        .find(|(key, _)| s.input(key).is_err())
                        .map(|(key, _)| (k, key))
                }) {
                    return Err(invalid!(
                        "instance {k} names `{key}`, which model `{}` has no input of",
                        s.name
                    ));
                }
            }
            let what = format!("input `{}`", info.name);
            Ok((
                info.name.clone(),
                from_json_rows(&what, &rows, info.dtype.unwrap_or(lathe_ir::DType::F32))?,
            ))
        })
        .collect()
}

/// Columnar format: `inputs` is the only input's value, or an object naming each input.
fn columnar_inputs(s: &Servable, inputs: &Json) -> Result<Vec<(String, Tensor)>> {
    match inputs {
        Json::Obj(fields) if !is_b64(inputs) => fields
            .iter()
            .map(|(name, v)| {
                let info = s.input(name)?;
                Ok((
                    name.clone(),
                    from_json(
                        &format!("input `{name}`"),
                        v,
                        info.dtype.unwrap_or(lathe_ir::DType::F32),
                    )?,
                ))
            })
            .collect(),
        v => {
            let [info] = s.inputs.as_slice() else {
                return Err(invalid!(
                    "model `{}` has {} inputs: `inputs` must be an object naming them",
                    s.name,
                    s.inputs.len()
                ));
            };
            Ok(vec![(
                info.name.clone(),
                from_json(
                    &format!("input `{}`", info.name),
                    v,
                    info.dtype.unwrap_or(lathe_ir::DType::F32),
                )?,
            )])
        }
    }
}

/// `:classify` and `:regress`: `examples` (and `context`) as tf.Example features in JSON.
async fn tf_examples(
    shared: &Shared,
    name: &str,
    choice: &VersionChoice,
    verb: &str,
    body: &[u8],
) -> Result<Reply> {
    use lathe_proto::tensorflow::serving as tfsp;
    use lathe_proto::tensorflow::{feature, Example, Feature, Features, FloatList, Int64List};
    let (v, s) = tf_request(shared, name, choice, body)?;
    let example = |what: &str, e: &Json| -> Result<Example> {
        let Json::Obj(fields) = e else {
            return Err(invalid!(
                "{what} must be an object of features, not {}",
                e.kind()
            ));
        };
        let feature = fields
            .iter()
            .map(|(k, v)| {
                let leaves: Vec<&Json> = match v {
                    Json::Arr(items) => items.iter().collect(),
                    v => vec![v],
                };
                let ints = leaves
                    .iter()
                    .all(|l| matches!(l, Json::Num(Number::Int(_))));
                let kind = if ints {
                    feature::Kind::Int64List(Int64List {
                        value: leaves
                            .iter()
                            .map(|l| {
                                if let Json::Num(Number::Int(i)) = l {
                                    *i
                                } else {
                                    0
                                }
                            })
                            .collect(),
                    })
                } else {
                    let value = (leaves.iter())
                        .map(|l| match l {
                            Json::Num(n) => Ok(n.as_f64() as f32),
                            o => Err(invalid!(
                                "{what}'s feature `{k}` holds {}; Lathe's models take numbers",
                                o.kind()
                            )),
                        })
                        .collect::<Result<_>>()?;
                    feature::Kind::FloatList(FloatList { value })
                };
                Ok((k.clone(), Feature { kind: Some(kind) }))
            })
            .collect::<Result<_>>()?;
        Ok(Example {
            features: Some(Features { feature }),
        })
    };
    let Some(Json::Arr(list)) = v.get("examples") else {
        return Err(invalid!(
            "the request needs `examples`, a list of objects of features"
        ));
    };
    let examples = (list.iter().enumerate())
        .map(|(k, e)| example(&format!("example {k}"), e))
        .collect::<Result<Vec<_>>>()?;
    let context = v
        .get("context")
        .map(|c| example("`context`", c))
        .transpose()?;
    let input = tfsp::Input {
        kind: Some(tfsp::input::Kind::ExampleListWithContext(
            tfsp::ExampleListWithContext { examples, context },
        )),
    };
    let (outputs, n) = tfs::run_examples(&s, Some(&input)).await?;
    let mut out = String::from("{\"results\":[");
    if verb == "classify" {
        let result = tfs::classification(&s, &outputs, n)?;
        for (i, c) in result.classifications.iter().enumerate() {
            out.push_str(if i > 0 { ",[" } else { "[" });
            for (j, class) in c.classes.iter().enumerate() {
                out.push_str(if j > 0 { ",[" } else { "[" });
                json::write_str(&mut out, &class.label);
                out.push(',');
                json::write_f32(&mut out, class.score);
                out.push(']');
            }
            out.push(']');
        }
    } else {
        let result = tfs::regression(&s, &outputs, n)?;
        for (i, r) in result.regressions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::write_f32(&mut out, r.value);
        }
    }
    out.push_str("]}");
    Ok(Reply::json(out))
}

// ---------------------------------------------------------------------------------------
// Open Inference Protocol (KServe v2)

async fn v2_route(
    shared: &Shared,
    get: bool,
    post: bool,
    rest: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply> {
    let parts: Vec<&str> = rest
        .trim_start_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match (parts.as_slice(), get, post) {
        ([], true, _) => {
            let m = kserve::server_metadata();
            let extensions = Json::Arr(m.extensions.iter().map(text).collect());
            Ok(Reply::json(
                obj([
                    ("name", text(m.name)),
                    ("version", text(m.version)),
                    ("extensions", extensions),
                ])
                .to_text(),
            ))
        }
        (["health", "live"], true, _) => Ok(Reply::json("{\"live\":true}".into())),
        (["health", "ready"], true, _) => {
            let ready = shared.ready();
            Ok(Reply {
                status: if ready { 200 } else { 503 },
                ..Reply::json(format!("{{\"ready\":{ready}}}"))
            })
        }
        (["models", name, tail @ ..], _, _) => {
            let name = percent_decode(name);
            let (version, tail) = match tail {
                ["versions", v, t @ ..] => (*v, t),
                t => ("", t),
            };
            match (tail, get, post) {
                ([], true, _) => {
                    shared
                        .observe(&name, "kserve_rest_metadata", async {
                            let s = kserve::resolve(&shared.repo, &name, version)?;
                            Ok(Reply::json(v2_metadata_json(&kserve::model_metadata(
                                &shared.repo,
                                &s,
                            ))))
                        })
                        .await
                }
                (["ready"], true, _) => {
                    let ready = match kserve::resolve(&shared.repo, &name, version) {
                        Ok(_) => true,
                        Err(ServeError::Unavailable(_)) => false,
                        Err(e) => return Err(e),
                    };
                    Ok(Reply {
                        status: if ready { 200 } else { 503 },
                        ..Reply::json(format!("{{\"name\":\"{name}\",\"ready\":{ready}}}"))
                    })
                }
                (["infer"], _, true) => {
                    shared
                        .observe(
                            &name,
                            "kserve_rest_infer",
                            v2_infer(shared, &name, version, headers, body),
                        )
                        .await
                }
                _ => Err(ServeError::NotFound(format!("no such endpoint: /v2{rest}"))),
            }
        }
        _ => Err(ServeError::NotFound(format!("no such endpoint: /v2{rest}"))),
    }
}

fn v2_metadata_json(m: &lathe_proto::inference::ModelMetadataResponse) -> String {
    let tensors = |ts: &[lathe_proto::inference::model_metadata_response::TensorMetadata]| {
        Json::Arr(
            (ts.iter())
                .map(|t| {
                    let shape = t.shape.iter().map(|&d| Json::Num(Number::Int(d))).collect();
                    obj([
                        ("name", text(&t.name)),
                        ("datatype", text(&t.datatype)),
                        ("shape", Json::Arr(shape)),
                    ])
                })
                .collect(),
        )
    };
    obj([
        ("name", text(&m.name)),
        ("versions", Json::Arr(m.versions.iter().map(text).collect())),
        ("platform", text(&m.platform)),
        ("inputs", tensors(&m.inputs)),
        ("outputs", tensors(&m.outputs)),
    ])
    .to_text()
}

/// A `parameters` object's boolean or integer value.
fn parameter<'a>(v: &'a Json, key: &str) -> Option<&'a Json> {
    v.get("parameters")?.get(key)
}

async fn v2_infer(
    shared: &Shared,
    name: &str,
    version: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply> {
    let (json_part, mut binary) = match headers.get(HEADER_LENGTH) {
        Some(h) => {
            let n: usize =
                (h.to_str().ok().and_then(|s| s.trim().parse().ok())).ok_or_else(|| {
                    invalid!("header `Inference-Header-Content-Length` is not a length")
                })?;
            if n > body.len() {
                return Err(invalid!(
                    "header `Inference-Header-Content-Length` is {n}, past the body's {} bytes",
                    body.len()
                ));
            }
            body.split_at(n)
        }
        None => (body, &[][..]),
    };
    let v = body_object(json_part)?;
    let s = kserve::resolve(&shared.repo, name, version)?;
    let max = shared.repo.limits().max_request_bytes;
    let Some(Json::Arr(list)) = v.get("inputs") else {
        return Err(invalid!("the request needs `inputs`, a list of tensors"));
    };
    let mut inputs = Vec::with_capacity(list.len());
    for (k, i) in list.iter().enumerate() {
        let name = i
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| invalid!("inputs[{k}] has no `name`"))?;
        let what = format!("input `{name}`");
        s.input(name)?;
        let datatype = i
            .get("datatype")
            .and_then(Json::as_str)
            .ok_or_else(|| invalid!("{what} has no `datatype`"))?;
        let dtype = kserve::input_dtype(name, datatype)?;
        let Some(Json::Arr(shape)) = i.get("shape") else {
            return Err(invalid!("{what} has no `shape` list"));
        };
        let shape = (shape.iter())
            .map(|d| match d {
                Json::Num(Number::Int(d)) => Ok(*d),
                o => Err(invalid!(
                    "{what}: `shape` holds {}, not an integer",
                    o.kind()
                )),
            })
            .collect::<Result<Vec<i64>>>()?;
        let dims = kserve_dims(&what, &shape)?;
        let n = convert::checked_elements(&what, dtype, &dims, max)?;
        let t = match (parameter(i, "binary_data_size"), i.get("data")) {
            (Some(Json::Num(Number::Int(size))), _) => {
                let size = usize::try_from(*size)
                    .map_err(|_| invalid!("{what}: `binary_data_size` is negative"))?;
                if size > binary.len() {
                    return Err(invalid!(
                        "{what}: `binary_data_size` is {size}, past the {} binary bytes left",
                        binary.len()
                    ));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                Tensor::from_le_bytes(dtype, &dims, mine).map_err(|e| invalid!("{what}: {e}"))?
            }
            (Some(o), _) => {
                return Err(invalid!(
                    "{what}: `binary_data_size` must be an integer, not {}",
                    o.kind()
                ))
            }
            (None, Some(data)) => {
                let mut leaves = Vec::new();
                flatten(data, &mut leaves).map_err(|e| invalid!("{what}: {e}"))?;
                if leaves.len() != n {
                    return Err(invalid!(
                        "{what}: shape {dims:?} has {n} elements, `data` holds {}",
                        leaves.len()
                    ));
                }
                convert::from_leaves(&what, dtype, &dims, &leaves)?
            }
            (None, None) => return Err(invalid!("{what} has no `data`")),
        };
        inputs.push((name.to_string(), t));
    }
    if !binary.is_empty() {
        return Err(invalid!(
            "{} bytes of binary data are left after the inputs' `binary_data_size`s",
            binary.len()
        ));
    }
    s.check_inputs(&inputs)?;
    let all_binary = matches!(parameter(&v, "binary_data_output"), Some(Json::Bool(true)));
    let requested: Vec<(String, bool)> = match v.get("outputs") {
        None => s
            .outputs
            .iter()
            .map(|o| (o.name.clone(), all_binary))
            .collect(),
        Some(Json::Arr(list)) => list
            .iter()
            .enumerate()
            .map(|(k, o)| {
                let name = o
                    .get("name")
                    .and_then(Json::as_str)
                    .ok_or_else(|| invalid!("outputs[{k}] has no `name`"))?;
                let binary = match parameter(o, "binary_data") {
                    Some(Json::Bool(b)) => *b,
                    _ => all_binary,
                };
                Ok((name.to_string(), binary))
            })
            .collect::<Result<_>>()?,
        Some(o) => return Err(invalid!("`outputs` must be a list, not {}", o.kind())),
    };
    let wanted: Vec<String> = requested.iter().map(|(n, _)| n.clone()).collect();
    let outputs = s.run(inputs, &wanted).await?;
    let mut out = String::from("{\"model_name\":");
    json::write_str(&mut out, &s.name);
    let _ = write!(out, ",\"model_version\":\"{}\"", s.version);
    if let Some(Json::Str(id)) = v.get("id") {
        out.push_str(",\"id\":");
        json::write_str(&mut out, id);
    }
    out.push_str(",\"outputs\":[");
    let mut tail: Vec<u8> = Vec::new();
    for (k, ((name, t), (_, binary))) in outputs.iter().zip(&requested).enumerate() {
        if k > 0 {
            out.push(',');
        }
        let datatype = kserve_dtype(t.dtype()).ok_or_else(|| {
            ServeError::Internal(format!(
                "output `{name}` is {}, which the protocol has no datatype for",
                t.dtype()
            ))
        })?;
        out.push_str("{\"name\":");
        json::write_str(&mut out, name);
        let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
        let _ = write!(
            out,
            ",\"datatype\":\"{datatype}\",\"shape\":[{}]",
            dims.join(",")
        );
        if *binary {
            let bytes = t.to_le_bytes();
            let _ = write!(
                out,
                ",\"parameters\":{{\"binary_data_size\":{}}}}}",
                bytes.len()
            );
            tail.extend_from_slice(&bytes);
        } else {
            out.push_str(",\"data\":");
            convert::write_json_flat(&mut out, t);
            out.push('}');
        }
    }
    out.push_str("]}");
    if tail.is_empty() {
        return Ok(Reply::json(out));
    }
    let header_len = out.len();
    let mut body = out.into_bytes();
    body.extend_from_slice(&tail);
    Ok(Reply {
        status: 200,
        content_type: "application/octet-stream",
        headers: vec![("inference-header-content-length", header_len.to_string())],
        body,
    })
}

/// The leaves of `data` (flat or nested lists), row-major.
fn flatten<'a>(v: &'a Json, out: &mut Vec<&'a Json>) -> std::result::Result<(), String> {
    match v {
        Json::Arr(items) => items.iter().try_for_each(|i| flatten(i, out)),
        leaf => {
            out.push(leaf);
            Ok(())
        }
    }
}

/// A path segment with `%XX` escapes decoded (a model name may hold any character).
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (b'%', Some(&h), Some(&l)) = (b[i], b.get(i + 1), b.get(i + 2)) {
            if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
