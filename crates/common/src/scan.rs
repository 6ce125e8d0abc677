//! A light scan of template text for what minijinja only finds when it
//! renders: the names used as filters (`| lenght`), tests (`is odd`),
//! functions (`range(3)`) and methods (`x.split(' ')`), and comparisons of
//! a task's status with a literal (`tasks.a.status == 'succeded'`). Each
//! finding keeps its byte offset in the text, so a diagnostic can point at
//! it. The scan tokenizes the `{{ … }}` and `{% … %}` parts (strings and
//! comments skipped); it is not a parser, and says nothing about text it
//! does not understand — the compiler has already refused bad syntax.

/// One use found in a template, with the byte offset of its name (or of
/// the literal, for a status comparison) in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Use<'a> {
    /// `x | name`, `{% filter name %}`.
    Filter(&'a str, usize),
    /// `x is name`, `x is not name`.
    Test(&'a str, usize),
    /// `name(…)` not after a `.`.
    Function(&'a str, usize),
    /// `receiver.name(…)`; the receiver is the name just before the dot.
    Method {
        receiver: &'a str,
        name: &'a str,
        at: usize,
    },
    /// `input['name']`: an input read by subscript (offset of the name).
    InputSubscript(&'a str, usize),
    /// `tasks.<task>.status` compared (`==`, `!=`, `in`) with a literal.
    StatusCompare {
        task: &'a str,
        literal: &'a str,
        at: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    /// A string literal's content (without quotes; escapes left as is).
    Str(&'a str),
    Punct(&'a str),
    Number,
}

/// Every use in `text`, in order.
pub(crate) fn scan(text: &str) -> Vec<Use<'_>> {
    let mut uses = Vec::new();
    for region in regions(text) {
        analyse(&region, &mut uses);
    }
    uses
}

/// The names `{% macro name(…) %}` defines in `text`: calling them is fine.
pub(crate) fn macros(text: &str) -> Vec<&str> {
    regions(text)
        .iter()
        .filter_map(|tokens| match tokens.as_slice() {
            [(Tok::Ident("macro"), _), (Tok::Ident(name), _), ..] => Some(*name),
            _ => None,
        })
        .collect()
}

/// The tokens of each `{{ … }}` / `{% … %}` region, with their offsets.
fn regions(text: &str) -> Vec<Vec<(Tok<'_>, usize)>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'#' => {
                i = text[i + 2..]
                    .find("#}")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
            }
            b'{' | b'%' => {
                let close = if bytes[i + 1] == b'{' { b'}' } else { b'%' };
                let (tokens, end) = tokenize(text, i + 2, close);
                let raw = tokens
                    .iter()
                    .filter(|(t, _)| *t != Tok::Punct("-"))
                    .map(|(t, _)| *t)
                    .eq([Tok::Ident("raw")]);
                out.push(tokens);
                i = end;
                // `{% raw %}…{% endraw %}` is text, whatever it holds.
                if raw {
                    i = text[i..]
                        .find("endraw")
                        .and_then(|e| text[i + e..].find("%}").map(|c| i + e + c + 2))
                        .unwrap_or(bytes.len());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Tokens from `start` up to the region's end (`close` followed by `}`,
/// outside a string); returns them and the offset after the end.
fn tokenize(text: &str, start: usize, close: u8) -> (Vec<(Tok<'_>, usize)>, usize) {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = start;
    while i < bytes.len() {
        let c = bytes[i];
        if c == close && bytes.get(i + 1) == Some(&b'}') {
            return (tokens, i + 2);
        }
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != c {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(bytes.len());
            tokens.push((Tok::Str(&text[i + 1..end]), i));
            i = end + 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            tokens.push((Tok::Ident(&text[i..j]), i));
            i = j;
        } else if c.is_ascii_digit() {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            tokens.push((Tok::Number, i));
            i = j;
        } else {
            let two = text.get(i..i + 2).unwrap_or("");
            let len = if ["==", "!=", "<=", ">=", "//", "**"].contains(&two) {
                2
            } else {
                // One character, whatever its width.
                text[i..].chars().next().map_or(1, char::len_utf8)
            };
            tokens.push((Tok::Punct(&text[i..i + len]), i));
            i += len;
        }
    }
    (tokens, bytes.len())
}

/// Jinja's word operators and keywords, which a `(` may follow without
/// being called.
const OPERATORS: &[&str] = &["and", "or", "not", "in", "is", "if", "else"];

fn analyse<'a>(tokens: &[(Tok<'a>, usize)], uses: &mut Vec<Use<'a>>) {
    let tok = |k: usize| tokens.get(k).map(|(t, _)| *t);
    if let (Some(Tok::Ident("filter")), Some(Tok::Ident(name))) = (tok(0), tok(1)) {
        uses.push(Use::Filter(name, tokens[1].1));
    }
    for (k, &(t, at)) in tokens.iter().enumerate() {
        let Tok::Ident(name) = t else { continue };
        let before = k.checked_sub(1).and_then(&tok);
        let after = tok(k + 1);
        match before {
            Some(Tok::Punct("|")) => uses.push(Use::Filter(name, at)),
            Some(Tok::Ident("is")) if name != "not" => uses.push(Use::Test(name, at)),
            Some(Tok::Ident("not")) if k >= 2 && tok(k - 2) == Some(Tok::Ident("is")) => {
                uses.push(Use::Test(name, at));
            }
            Some(Tok::Punct(".")) if after == Some(Tok::Punct("(")) => {
                let receiver = match k.checked_sub(2).and_then(&tok) {
                    Some(Tok::Ident(r)) => r,
                    _ => "",
                };
                uses.push(Use::Method { receiver, name, at });
            }
            Some(Tok::Punct(".")) => {}
            Some(Tok::Ident("macro" | "call" | "set" | "for" | "import" | "from")) => {}
            // `a or (b)`: an operator before a parenthesis, not a call.
            _ if OPERATORS.contains(&name) => {}
            _ if after == Some(Tok::Punct("(")) => uses.push(Use::Function(name, at)),
            _ => {}
        }
        if name == "input"
            && before != Some(Tok::Punct("."))
            && tok(k + 1) == Some(Tok::Punct("["))
            && let Some(Tok::Str(input)) = tok(k + 2)
            && tok(k + 3) == Some(Tok::Punct("]"))
        {
            uses.push(Use::InputSubscript(input, tokens[k + 2].1 + 1));
        }
        // tasks . X . status (== | != | in) literal(s), and literal == tasks.X.status
        if name == "tasks"
            && before != Some(Tok::Punct("."))
            && tok(k + 1) == Some(Tok::Punct("."))
            && let Some(Tok::Ident(task)) = tok(k + 2)
            && tok(k + 3) == Some(Tok::Punct("."))
            && tok(k + 4) == Some(Tok::Ident("status"))
        {
            match tok(k + 5) {
                Some(Tok::Punct("==" | "!=")) => {
                    if let Some(Tok::Str(literal)) = tok(k + 6) {
                        uses.push(Use::StatusCompare {
                            task,
                            literal,
                            at: tokens[k + 6].1,
                        });
                    }
                }
                Some(Tok::Ident("in")) | Some(Tok::Ident("not"))
                    if matches!(
                        tok(k + 6),
                        Some(Tok::Punct("[" | "(")) | Some(Tok::Ident("in"))
                    ) =>
                {
                    for &(t, at) in tokens[k + 6..]
                        .iter()
                        .take_while(|(t, _)| !matches!(t, Tok::Punct("]" | ")")))
                    {
                        if let Tok::Str(literal) = t {
                            uses.push(Use::StatusCompare { task, literal, at });
                        }
                    }
                }
                _ => {}
            }
            if k >= 2
                && let (Some(Tok::Str(literal)), Some(Tok::Punct("==" | "!="))) =
                    (tok(k - 2), tok(k - 1))
            {
                uses.push(Use::StatusCompare {
                    task,
                    literal,
                    at: tokens[k - 2].1,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_tests_functions_and_methods_are_found_with_their_offsets() {
        let text = "{{ xs | lenght }} {{ n is od }} {{ rang(3) }} {{ s.split(' ') | join(',') }}";
        let uses = scan(text);
        assert_eq!(
            uses,
            vec![
                Use::Filter("lenght", 8),
                Use::Test("od", 26),
                Use::Function("rang", 35),
                Use::Method {
                    receiver: "s",
                    name: "split",
                    at: 51
                },
                Use::Filter("join", 64),
            ]
        );
        assert_eq!(&text[8..14], "lenght");
    }

    #[test]
    fn strings_and_comments_are_not_code() {
        assert_eq!(scan("{{ 'a | b(' }} {# x | y #} plain | text()"), vec![]);
        assert_eq!(scan("{{ \"it\\\"s | z\" }}"), vec![]);
        assert_eq!(
            scan("{% raw %}{{ x | nope }}{% endraw %}{{ y | lenght }}"),
            vec![Use::Filter("lenght", 42)]
        );
        assert_eq!(
            scan("{% if x is not defined %}{% filter upper %}a{% endfilter %}{% endif %}"),
            vec![Use::Test("defined", 15), Use::Filter("upper", 35)]
        );
    }

    #[test]
    fn status_comparisons_keep_the_literal() {
        let text = "{{ tasks.a.status == 'succeded' or 'faild' != tasks.b.status }}";
        let uses = scan(text);
        assert!(uses.contains(&Use::StatusCompare {
            task: "a",
            literal: "succeded",
            at: 21
        }));
        assert!(uses.contains(&Use::StatusCompare {
            task: "b",
            literal: "faild",
            at: 35
        }));
        let uses = scan("tasks.a.status in ['failed', 'skiped']");
        assert!(uses.is_empty(), "outside braces nothing is scanned");
        let uses = scan("{{ tasks.a.status in ['failed', 'skiped'] }}");
        let literals: Vec<&str> = uses
            .iter()
            .filter_map(|u| match u {
                Use::StatusCompare { literal, .. } => Some(*literal),
                _ => None,
            })
            .collect();
        assert_eq!(literals, ["failed", "skiped"]);
    }

    #[test]
    fn inputs_read_by_subscript_are_found() {
        assert_eq!(
            scan("{{ input['should-print'] and input.x[0] }}"),
            vec![Use::InputSubscript("should-print", 10)]
        );
    }

    #[test]
    fn macro_definitions_and_unclosed_text_do_not_panic() {
        assert_eq!(
            macros("{% macro greet(n) %}hi{% endmacro %}{{ greet(1) }}"),
            ["greet"]
        );
        for text in [
            "{{",
            "{{ 'open",
            "{%",
            "{#",
            "{{ a |",
            "{{ é | ü }}",
            "{{ x.é( }}",
        ] {
            let _ = scan(text);
        }
    }
}
