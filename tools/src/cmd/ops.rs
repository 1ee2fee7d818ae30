//! `lathe ops`: every IR op with its operands, attributes, dtypes, the TensorFlow and ONNX ops
//! that import to it and a summary, printed from the op registry and the importers' tables (the data the
//! code itself uses), as a text table, JSON, or the Markdown of `docs/ops.md`.

use anyhow::Result;
use clap::Args;
use lathe_compiler::import::{onnx, tensorflow};
use lathe_ir::ops::{registry, OpInfo};
use serde_json::{Map, Value};

/// Arguments of `lathe ops`.
#[derive(Args)]
pub struct OpsArgs {
    /// Print JSON: one object per op with the keys of the table's columns.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the Markdown op reference (`docs/ops.md`).
    #[arg(long)]
    pub markdown: bool,
}

/// Runs `lathe ops`.
pub fn run(args: OpsArgs) -> Result<()> {
    let rows = rows();
    if args.json {
        let list: Vec<Value> = rows.iter().map(Row::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if args.markdown {
        print!("{}", markdown(&rows));
    } else {
        print!("{}", text(&rows));
    }
    Ok(())
}

/// One cell of the table.
enum Cell {
    Text(String),
    List(Vec<String>),
}

impl Cell {
    fn to_text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::List(v) => v.join(", "),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::List(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
        }
    }
}

/// One op's row: `(column key, cell)` in column order. A new column (a backend's native
/// support, ONNX ops) is one more entry pushed in [`row`]; text, JSON and Markdown print every
/// column.
struct Row {
    cells: Vec<(&'static str, Cell)>,
}

impl Row {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (key, cell) in &self.cells {
            m.insert(key.to_string(), cell.to_json());
        }
        Value::Object(m)
    }
}

/// The row of one op.
fn row(info: &OpInfo) -> Row {
    let attrs = info
        .attrs
        .iter()
        .map(|a| format!("{}: {}", a.name, a.kind.name()))
        .collect();
    let tf = tensorflow::table()
        .iter()
        .filter(|r| r.ir.first() == Some(&info.name))
        .map(|r| r.name.to_string())
        .collect();
    let onnx = onnx::table()
        .iter()
        .filter(|r| r.ir.first() == Some(&info.name))
        .map(|r| r.name.to_string())
        .collect();
    Row {
        cells: vec![
            ("name", Cell::Text(info.name.to_string())),
            ("family", Cell::Text(info.family.name().to_string())),
            ("operands", Cell::Text(info.signature())),
            ("attributes", Cell::List(attrs)),
            ("dtypes", Cell::Text(info.dtype_rule())),
            ("tensorflow", Cell::List(tf)),
            ("onnx", Cell::List(onnx)),
            ("cpu", Cell::Text(cpu(info))),
            ("summary", Cell::Text(info.summary.to_string())),
        ],
    }
}

/// Which dtypes the CPU backend runs the op on natively, from the backend's own capability
/// query: `all`, the list, or `none` (with the first reason).
fn cpu(info: &OpInfo) -> String {
    match lathe_runtime::cpu::capability::native_dtypes(info) {
        None if info.structural => "view".to_string(),
        None => "per node".to_string(),
        Some((_, no)) if no.is_empty() => "all".to_string(),
        Some((yes, no)) if yes.is_empty() => format!("none ({})", no[0].1),
        Some((yes, _)) => yes.iter().map(|d| d.name()).collect::<Vec<_>>().join(" "),
    }
}

/// Every IR op's row, in registry order (by family).
fn rows() -> Vec<Row> {
    registry().iter().map(row).collect()
}

/// An aligned plain-text table (the summary, last, is not padded).
fn text(rows: &[Row]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let keys: Vec<&str> = first.cells.iter().map(|(k, _)| *k).collect();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.cells.iter().map(|(_, c)| c.to_text()).collect())
        .collect();
    let mut widths: Vec<usize> = keys.iter().map(|k| k.len()).collect();
    for r in &table {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(keys.clone());
    for r in &table {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The op reference `docs/ops.md`.
fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "<!-- Generated by `lathe ops --markdown` from the op table (`ir/src/ops/mod.rs`) and the \
         TensorFlow and ONNX importers' tables. Do not edit: `LATHE_BLESS=1 cargo test -p lathe-cli --test \
         ops` rewrites it, and that test fails when it is stale. -->\n\n\
         # IR ops\n\n\
         Every op of Lathe's IR: its operands (`name?` optional, `name...` any number), \
         attributes, the dtypes each operand accepts (operands listed together share one \
         dtype; `index` is i32 or i64), the TensorFlow and ONNX ops that import to it (an ONNX \
         op written with several IR ops is listed under the first), and what it computes. `lathe ops` prints the same table, `lathe ops --json` as JSON.\n\n",
    );
    let Some(first) = rows.first() else {
        return out;
    };
    let keys: Vec<&str> = first.cells.iter().map(|(k, _)| *k).collect();
    out.push_str(&format!("| {} |\n", keys.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(keys.len())));
    for r in rows {
        let cells: Vec<String> = r
            .cells
            .iter()
            .map(|(k, c)| {
                let s = c.to_text().replace('|', "\\|");
                match (*k, c) {
                    ("name", _) => format!("`{s}`"),
                    (_, Cell::List(v)) if !v.is_empty() => v
                        .iter()
                        .map(|x| format!("`{}`", x.replace('|', "\\|")))
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => s,
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}
