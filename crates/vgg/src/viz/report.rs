//! The `vgg dissect` report: one HTML page with every picture embedded as a base64 PNG data
//! URI, so it opens offline and survives being mailed or moved; the PNGs are also written
//! beside it for reuse.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};
use crate::io::write_atomically;
use crate::viz::dissect::{Dissection, Figure};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1400px}\
figure{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}\
figcaption{font-size:90%;color:#444;max-width:480px}\
img{image-rendering:pixelated;max-width:100%}\
table{border-collapse:collapse}td,th{padding:2px 12px;text-align:left}\
td.prob{text-align:right;font-variant-numeric:tabular-nums}\
pre{background:#f4f4f4;padding:1em;overflow-x:auto}";

/// Refuses an output folder the report cannot be written to, before the work: a file in
/// its place, or (unless `overwrite`) a report already there.
pub fn check_out(dir: &Path, overwrite: bool, inputs: &[&Path]) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::BadArgument(format!(
            "--out {} is a file: the report is a folder (index.html and its PNGs)",
            dir.display()
        )));
    }
    crate::io::refuse_to_replace(dir, &["index.html"], overwrite, "")?;
    match dir.is_dir() {
        true => crate::io::check_output(&dir.join("index.html"), inputs),
        false => Ok(()),
    }
}

/// Writes every figure as its own PNG and the page as `index.html` in `dir` (created if
/// missing); `title` names what was dissected (the image). Files of those names already in
/// `dir` are replaced only when `overwrite` says so, and never when one is (by any path or
/// link) one of `inputs` or something other than a file: all are checked before any is
/// written.
pub fn write(
    dir: &Path,
    dissection: &Dissection,
    (title, inputs): (&str, &[&Path]),
    overwrite: bool,
) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Err(Error::BadArgument(
            "the report's folder is an empty path; name a folder (it is created if missing)".into(),
        ));
    }
    let mut names: Vec<&str> = dissection.figures().map(|f| f.file.as_str()).collect();
    names.push("index.html");
    crate::io::refuse_to_replace(dir, &names, overwrite, "")?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create", e))?;
    for name in &names {
        crate::io::check_output(&dir.join(name), inputs)?;
    }
    for figure in dissection.figures() {
        let path = dir.join(&figure.file);
        write_atomically(&path, |tmp| {
            std::fs::write(tmp, &figure.png).map_err(|e| Error::io(&path, "cannot write", e))
        })?;
    }
    let page = html(dissection, title);
    let path = dir.join("index.html");
    write_atomically(&path, |tmp| {
        std::fs::write(tmp, page).map_err(|e| Error::io(&path, "cannot write", e))
    })
}

/// The self-contained page.
pub fn html(d: &Dissection, title: &str) -> String {
    let title = escape(&format!("{} on {title}", d.model));
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>vgg dissect: {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n"
    );
    page += "<h2>Input and Grad-CAM</h2>\n";
    page += &figure(&d.input, "input");
    page += &figure(&d.gradcam, "gradcam");
    page += &top_table(&d.top);
    page += "<h2>Feature maps: the output of each conv block</h2>\n\
             <p>Channels ordered by mean activation (most active first), each stretched to \
             black–white on its own.</p>\n";
    for (i, stage) in d.stages.iter().enumerate() {
        page += &figure(stage, &format!("stage{}", i + 1));
    }
    page += "<h2>First-layer filters</h2>\n";
    page += &figure(&d.filters, "filters");
    let _ = write!(
        page,
        "<h2>Model summary</h2>\n<pre id=\"summary\">{}</pre>\n</body>\n</html>\n",
        escape(&d.summary)
    );
    page
}

fn figure(figure: &Figure, id: &str) -> String {
    let caption = escape(&figure.caption);
    format!(
        "<figure id=\"{id}\"><img src=\"data:image/png;base64,{}\" alt=\"{caption}\">\
         <figcaption>{caption}</figcaption></figure>\n",
        STANDARD.encode(&figure.png)
    )
}

fn top_table(top: &[(String, f32)]) -> String {
    let mut table = format!(
        "<h2>Top-{} classes</h2>\n<table id=\"top\">\n<tr><th>#</th><th>class</th>\
         <th>probability</th></tr>\n",
        top.len()
    );
    for (rank, (name, prob)) in top.iter().enumerate() {
        let _ = writeln!(
            table,
            "<tr class=\"class\"><td>{}</td><td>{}</td><td class=\"prob\">{:.2}%</td></tr>",
            rank + 1,
            escape(name),
            prob * 100.0
        );
    }
    table + "</table>\n"
}

/// Text made safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("jack-o'-lantern <b>&\"</b>"),
            "jack-o&#39;-lantern &lt;b&gt;&amp;&quot;&lt;/b&gt;"
        );
    }
}
