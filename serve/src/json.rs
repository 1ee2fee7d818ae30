//! JSON as TensorFlow Serving's REST API speaks it: standard JSON plus the bare tokens `NaN`,
//! `Infinity` and `-Infinity` for non-finite floats, in requests and in responses. Integers
//! keep their exact value (an int64 beyond 2^53 is not rounded through f64).
//!
//! The parser bounds nesting ([`MAX_DEPTH`]) so a hostile body cannot exhaust the stack; the
//! body's size is bounded before it gets here.

use std::fmt::Write as _;

/// The deepest nesting of arrays and objects a request may have (a rank-32 tensor in row
/// format is 33 deep).
pub const MAX_DEPTH: usize = 64;

/// A JSON number, as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// An integer literal that fits an i64.
    Int(i64),
    /// An integer literal above i64::MAX that fits a u64.
    UInt(u64),
    /// Anything else: a fraction, an exponent, `NaN`, `Infinity`.
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::UInt(u) => u as f64,
            Number::Float(f) => f,
        }
    }
}

/// A parsed JSON value. Objects keep their keys in order (a duplicate key is an error).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Num(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "a list",
            Json::Obj(_) => "an object",
        }
    }

    /// Parses a whole document.
    pub fn parse(text: &[u8]) -> Result<Json, String> {
        let mut p = Parser { s: text, at: 0 };
        let v = p.value(0)?;
        p.skip_ws();
        if p.at != p.s.len() {
            return Err(p.error("unexpected text after the JSON value"));
        }
        Ok(v)
    }

    /// The compact text of this value.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(Number::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            Json::Num(Number::UInt(u)) => {
                let _ = write!(out, "{u}");
            }
            Json::Num(Number::Float(f)) => write_float(out, *f),
            Json::Str(s) => write_str(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A float as JSON: the shortest text that reads back to the same value, or a bare token.
pub fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        // `Debug` keeps a fraction or an exponent, so the value reads back as a float.
        let _ = write!(out, "{f:?}");
    }
}

/// An f32 as JSON, shortest for f32 (0.1f32 is `0.1`, not `0.10000000149011612`).
pub fn write_f32(out: &mut String, f: f32) {
    if f.is_finite() {
        let _ = write!(out, "{f:?}");
    } else {
        write_float(out, f64::from(f));
    }
}

pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("malformed JSON at byte {}: {what}", self.at)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.skip_ws();
        let Some(&c) = self.s.get(self.at) else {
            return Err(self.error("unexpected end of input"));
        };
        match c {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => Ok(Json::Str(self.string()?)),
            b't' if self.eat("true") => Ok(Json::Bool(true)),
            b'f' if self.eat("false") => Ok(Json::Bool(false)),
            b'n' if self.eat("null") => Ok(Json::Null),
            b'N' if self.eat("NaN") => Ok(Json::Num(Number::Float(f64::NAN))),
            b'I' if self.eat("Infinity") => Ok(Json::Num(Number::Float(f64::INFINITY))),
            b'-' if self.eat("-Infinity") => Ok(Json::Num(Number::Float(f64::NEG_INFINITY))),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.error(&format!("unexpected character `{}`", c as char))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, String> {
        self.at += 1;
        let mut fields: Vec<(String, Json)> = Vec::new();
        self.skip_ws();
        if self.eat("}") {
            return Ok(Json::Obj(fields));
        }
        loop {
            self.skip_ws();
            if self.s.get(self.at) != Some(&b'"') {
                return Err(self.error("expected a key in quotes"));
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(":") {
                return Err(self.error("expected `:` after a key"));
            }
            let v = self.value(depth + 1)?;
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(self.error(&format!("duplicate key \"{key}\"")));
            }
            fields.push((key, v));
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                return Ok(Json::Obj(fields));
            }
            return Err(self.error("expected `,` or `}` in an object"));
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, String> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat("]") {
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                return Ok(Json::Arr(items));
            }
            return Err(self.error("expected `,` or `]` in a list"));
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err(self.error("unterminated string"));
            };
            self.at += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return Err(self.error("unterminated string"));
                    };
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("invalid escape in a string")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(self.error("control character in a string")),
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("a string is not valid UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.error("invalid \\u escape"))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.at += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.eat("\\u") {
                return Err(self.error("unpaired surrogate in a \\u escape"));
            }
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error("unpaired surrogate in a \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    /// A number. A decimal of at most 19 significant digits whose value is an integer below
    /// 2^53 times an exact power of ten (10^-22 ..= 10^22) is one correctly rounded operation
    /// on two exact f64s (Clinger's fast path), computed here; any other goes to the standard
    /// library's parser.
    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        let negative = self.s.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        // Every digit, integer and fraction, as one integer while it has at most 19
        // significant digits.
        let mut mantissa: u64 = 0;
        let mut significant = 0usize;
        let mut digits = |p: &mut Self| {
            let from = p.at;
            while let Some(&d @ b'0'..=b'9') = p.s.get(p.at) {
                p.at += 1;
                if mantissa != 0 || d != b'0' {
                    significant += 1;
                }
                if significant <= 19 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                }
            }
            p.at - from
        };
        if digits(self) == 0 {
            return Err(self.error("expected digits"));
        }
        let mut exp10: i64 = 0;
        let mut integral = true;
        if self.s.get(self.at) == Some(&b'.') {
            self.at += 1;
            integral = false;
            let fraction = digits(self);
            if fraction == 0 {
                return Err(self.error("expected digits after `.`"));
            }
            exp10 -= fraction as i64;
        }
        if let Some(b'e' | b'E') = self.s.get(self.at) {
            self.at += 1;
            integral = false;
            let sign = match self.s.get(self.at) {
                Some(b'-') => {
                    self.at += 1;
                    -1
                }
                Some(b'+') => {
                    self.at += 1;
                    1
                }
                _ => 1,
            };
            let from = self.at;
            let mut e: i64 = 0;
            while let Some(&d @ b'0'..=b'9') = self.s.get(self.at) {
                self.at += 1;
                e = (e * 10 + i64::from(d - b'0')).min(1 << 30);
            }
            if self.at == from {
                return Err(self.error("expected digits in an exponent"));
            }
            exp10 += sign * e;
        }
        if integral && significant <= 18 {
            let m = mantissa as i64;
            return Ok(Json::Num(Number::Int(if negative { -m } else { m })));
        }
        if !integral && significant <= 19 && mantissa < 1 << 53 && exp10.abs() <= 22 {
            let m = mantissa as f64;
            let v = if exp10 < 0 {
                m / POW10[exp10.unsigned_abs() as usize]
            } else {
                m * POW10[exp10 as usize]
            };
            return Ok(Json::Num(Number::Float(if negative { -v } else { v })));
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).expect("ASCII digits");
        if integral {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Json::Num(Number::Int(i)));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Json::Num(Number::UInt(u)));
            }
        }
        text.parse::<f64>()
            .map(|f| Json::Num(Number::Float(f)))
            .map_err(|_| self.error("invalid number"))
    }
}

/// The powers of ten an f64 holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tensorflow_servings_non_finite_tokens_and_exact_integers() {
        let v = Json::parse(br#"{"a": [NaN, Infinity, -Infinity, -0.5e1], "b": 9007199254740993}"#)
            .unwrap();
        let Json::Arr(a) = v.get("a").unwrap() else {
            panic!()
        };
        let Json::Num(Number::Float(nan)) = a[0] else {
            panic!()
        };
        assert!(nan.is_nan());
        assert_eq!(a[1], Json::Num(Number::Float(f64::INFINITY)));
        assert_eq!(a[2], Json::Num(Number::Float(f64::NEG_INFINITY)));
        assert_eq!(a[3], Json::Num(Number::Float(-5.0)));
        assert_eq!(v.get("b"), Some(&Json::Num(Number::Int(9007199254740993))));
        assert_eq!(
            Json::parse(b"18446744073709551615").unwrap(),
            Json::Num(Number::UInt(u64::MAX))
        );
    }

    #[test]
    fn numbers_read_as_the_standard_parser_reads_them() {
        let mut texts: Vec<String> = [
            "0.1",
            "-0.0",
            "0.3",
            "1e22",
            "1e23",
            "9007199254740993.0",
            "123456789012345678.9",
            "1.7976931348623157e308",
            "5e-324",
            "2.5E-3",
            "0.000000000000000000000001",
            "4.35",
            "-12345.6789e-3",
            "1234567890123456789e-5",
            "0e5",
            "1E+2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // f32 values written shortest, as requests carry them, and f64s likewise.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let f = f64::from_bits(state);
            if f.is_finite() {
                texts.push(format!("{f:?}"));
                if (f as f32).is_finite() {
                    texts.push(format!("{:?}", f as f32));
                }
                texts.push(format!(
                    "{:.6}",
                    (state >> 11) as f64 / (1u64 << 53) as f64 * 100.0
                ));
            }
        }
        for text in texts {
            let Json::Num(n) = Json::parse(text.as_bytes()).unwrap() else {
                panic!("{text}")
            };
            let want: f64 = text.parse().unwrap();
            assert_eq!(n.as_f64().to_bits(), want.to_bits(), "{text}");
        }
    }

    #[test]
    fn writes_what_it_reads() {
        let text = r#"{"s":"q\"\\\n\u0001é","n":[1,-2,0.1,1e30,NaN,Infinity,-Infinity,true,null]}"#;
        let v = Json::parse(text.as_bytes()).unwrap();
        assert_eq!(v.to_text(), text);
        assert_eq!(
            Json::parse(v.to_text().as_bytes()).unwrap().to_text(),
            v.to_text()
        );
        let mut out = String::new();
        write_f32(&mut out, 0.1);
        assert_eq!(out, "0.1");
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_byte() {
        for (text, what) in [
            (&b"{\"a\": }"[..], "unexpected character"),
            (b"[1, 2", "expected `,` or `]`"),
            (b"[1, ", "unexpected end"),
            (b"{\"a\": 1, \"a\": 2}", "duplicate key"),
            (b"[1] x", "after the JSON value"),
            (b"\"\\ud800\"", "unpaired surrogate"),
            (b"01.", "expected digits after"),
            (b"\"\xff\"", "not valid UTF-8"),
        ] {
            let e = Json::parse(text).unwrap_err();
            assert!(e.contains(what) && e.contains("at byte"), "{e}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2);
        assert!(Json::parse(deep.as_bytes())
            .unwrap_err()
            .contains("nested deeper"));
    }
}
