//! A small, zero-copy `multipart/form-data` parser (RFC 7578).
//!
//! Lambda hands us the whole body at once, so there is nothing to stream: parts are
//! slices of the body, and no part is copied. The parser bounds what a hostile body
//! can make it do: the number of parts, the size of each part's headers, and it
//! never allocates in proportion to the body.

use super::InputError;

const MAX_PARTS: usize = 16;
const MAX_PART_HEADER_BYTES: usize = 8 * 1024;
const MAX_BOUNDARY_LEN: usize = 70; // RFC 2046

#[derive(Debug)]
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}

#[derive(Debug)]
pub struct Form<'a> {
    pub parts: Vec<Part<'a>>,
}

impl<'a> Form<'a> {
    pub fn get(&self, name: &str) -> Option<&Part<'a>> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// Extracts the boundary from a `Content-Type` header value.
pub fn boundary(content_type: &str) -> Result<&str, InputError> {
    let mut params = content_type.split(';');
    let media = params.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Err(InputError::unsupported(
            "body",
            format!(
                "expected Content-Type multipart/form-data, got {:?}",
                truncate(media, 80)
            ),
        ));
    }
    for param in params {
        if let Some((k, v)) = param.split_once('=') {
            if k.trim().eq_ignore_ascii_case("boundary") {
                let v = v.trim().trim_matches('"');
                if v.is_empty() || v.len() > MAX_BOUNDARY_LEN {
                    return Err(InputError::invalid(
                        "body",
                        "the multipart boundary is empty or too long",
                    ));
                }
                return Ok(v);
            }
        }
    }
    Err(InputError::invalid(
        "body",
        "the multipart Content-Type has no boundary",
    ))
}

pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Form<'a>, InputError> {
    let bad = |m: &str| InputError::invalid("body", format!("malformed multipart body: {m}"));
    let mut delimiter = Vec::with_capacity(boundary.len() + 4);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary.as_bytes());

    // The first delimiter may follow a preamble; later ones follow a CRLF.
    let first = find(body, &delimiter, 0).ok_or_else(|| bad("no opening boundary"))?;
    let mut pos = first + delimiter.len();
    delimiter.splice(0..0, *b"\r\n");

    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(Form { parts });
        }
        if !rest.starts_with(b"\r\n") {
            return Err(bad("boundary not followed by CRLF"));
        }
        pos += 2;
        if parts.len() == MAX_PARTS {
            return Err(InputError::too_large(
                "body",
                format!("more than {MAX_PARTS} form fields"),
            ));
        }
        let header_end = find(
            &body[..body.len().min(pos + MAX_PART_HEADER_BYTES + 4)],
            b"\r\n\r\n",
            pos,
        )
        .ok_or_else(|| bad("part headers are unterminated or longer than 8 KiB"))?;
        let headers = std::str::from_utf8(&body[pos..header_end])
            .map_err(|_| bad("part headers are not UTF-8"))?;
        let data_start = header_end + 4;
        let data_end =
            find(body, &delimiter, data_start).ok_or_else(|| bad("missing closing boundary"))?;
        let part = parse_headers(headers, &body[data_start..data_end])?;
        if parts.iter().any(|p: &Part| p.name == part.name) {
            return Err(InputError::invalid(
                "body",
                format!("form field {:?} appears more than once", part.name),
            ));
        }
        parts.push(part);
        pos = data_end + delimiter.len();
    }
}

fn parse_headers<'a>(headers: &'a str, data: &'a [u8]) -> Result<Part<'a>, InputError> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in headers.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("content-disposition") {
            for param in value.split(';').skip(1) {
                if let Some((k, v)) = param.split_once('=') {
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "name" => name = Some(v),
                        "filename" => filename = Some(v),
                        _ => {}
                    }
                }
            }
        } else if key.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim());
        }
    }
    let name = name.ok_or_else(|| InputError::invalid("body", "a form part has no name"))?;
    Ok(Part {
        name,
        filename,
        content_type,
        data,
    })
}

/// The first `needle` in `haystack` at or after `from`. SIMD (memchr's memmem): the
/// delimiter search is a pass over the whole body, the image included.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(haystack.get(from..)?, needle).map(|i| i + from)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = b"preamble\r\n".to_vec();
        for (name, filename, data) in parts {
            out.extend_from_slice(b"--XyZ\r\n");
            match filename {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    #[test]
    fn parses_files_and_fields_without_copying() {
        let raw = body(&[
            ("image", Some("a.png"), b"\x89PNG\r\n--Xy not a boundary"),
            ("show_landmarks", None, b"true"),
        ]);
        let form = parse(&raw, "XyZ").unwrap();
        assert_eq!(form.parts.len(), 2);
        let image = form.get("image").unwrap();
        assert_eq!(image.filename, Some("a.png"));
        assert_eq!(image.data, b"\x89PNG\r\n--Xy not a boundary");
        assert_eq!(form.get("show_landmarks").unwrap().data, b"true");
    }

    #[test]
    fn boundary_is_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").unwrap(),
            "abc"
        );
        assert_eq!(boundary("application/json").unwrap_err().field, "body");
        assert!(boundary("multipart/form-data").is_err());
    }

    #[test]
    fn rejects_truncated_and_duplicate_parts() {
        let raw = body(&[("image", Some("a"), b"x")]);
        assert!(parse(&raw[..raw.len() - 12], "XyZ").is_err());
        let dup = body(&[("image", Some("a"), b"x"), ("image", Some("b"), b"y")]);
        assert!(parse(&dup, "XyZ")
            .unwrap_err()
            .message
            .contains("more than once"));
        let many: Vec<(String, Option<&str>, &[u8])> = (0..20)
            .map(|i| (format!("f{i}"), None, &b"1"[..]))
            .collect();
        let many: Vec<(&str, Option<&str>, &[u8])> =
            many.iter().map(|(n, f, d)| (n.as_str(), *f, *d)).collect();
        assert_eq!(
            parse(&body(&many), "XyZ").unwrap_err().kind,
            super::super::InputErrorKind::TooLarge
        );
    }
}
