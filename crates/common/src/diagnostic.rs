//! Validation problems with their place in the source, rendered like a
//! compiler's: file, line, column, a caret under the spot, and a hint.

use std::fmt;

use miette::{LabeledSpan, NamedSource, SourceSpan};

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, naming the offending names.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// Byte offset and length in the source, when known.
    pub span: Option<(usize, usize)>,
}

impl Problem {
    /// A problem at a byte offset of `source`.
    #[must_use]
    pub fn at(source: &str, offset: usize, len: usize, message: impl Into<String>) -> Self {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let mut end = offset.saturating_add(len.max(1)).min(source.len());
        while !source.is_char_boundary(end) {
            end += 1;
        }
        let len = end - offset;
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self {
            message: message.into(),
            hint: None,
            line,
            column,
            span: Some((offset, len.max(1))),
        }
    }

    /// A problem with no known place.
    #[must_use]
    pub fn nowhere(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            line: 0,
            column: 0,
            span: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every problem found in one workflow file. Implements
/// [`miette::Diagnostic`], so a CLI renders it with the source and carets.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    origin: String,
    /// Warnings (the workflow is valid) rather than problems.
    warning: bool,
    problems: Vec<Problem>,
    rendered: Vec<Rendered>,
}

impl Diagnostics {
    pub(crate) fn new(origin: &str, source: &str, problems: Vec<Problem>) -> Self {
        Self::build(origin, source, problems, false)
    }

    /// Advice about a valid workflow, shown like problems.
    pub(crate) fn warnings(origin: &str, source: &str, problems: Vec<Problem>) -> Self {
        Self::build(origin, source, problems, true)
    }

    fn build(origin: &str, source: &str, mut problems: Vec<Problem>, warning: bool) -> Self {
        problems.sort_by_key(|p| (p.line, p.column));
        // Each problem once, even when two expressions (or two paths of
        // one) found it, wherever it was found among the others.
        let mut seen = std::collections::HashSet::new();
        problems.retain(|p| seen.insert((p.line, p.column, p.message.clone())));
        let source = std::sync::Arc::new(source.to_owned());
        let rendered = problems
            .iter()
            .map(|problem| Rendered {
                problem: problem.clone(),
                warning,
                source: NamedSource::new(origin, SharedSource(source.clone())),
            })
            .collect();
        Self {
            origin: origin.to_owned(),
            warning,
            problems,
            rendered,
        }
    }

    /// The problems, in source order.
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Whether these are warnings about a valid workflow.
    #[must_use]
    pub fn is_warning(&self) -> bool {
        self.warning
    }

    /// The file name the problems are reported against.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Each problem as a diagnostic of its own (source snippet, caret,
    /// hint), for a report handler to render one by one.
    pub fn reports(&self) -> impl Iterator<Item = &dyn miette::Diagnostic> {
        self.rendered.iter().map(|r| r as &dyn miette::Diagnostic)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let kind = if self.warning { "warning: " } else { "" };
            write!(
                f,
                "{}:{}:{}: {kind}{}",
                self.origin, p.line, p.column, p.message
            )?;
            if let Some(hint) = &p.hint {
                write!(f, " (hint: {hint})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl miette::Diagnostic for Diagnostics {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(if self.warning {
            format!("weft::warning ({} warning(s))", self.problems.len())
        } else {
            format!("weft::invalid ({} problem(s))", self.problems.len())
        }))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(
            self.rendered.iter().map(|r| r as &dyn miette::Diagnostic),
        ))
    }
}

/// The workflow source, shared by every problem's rendering.
#[derive(Debug, Clone)]
struct SharedSource(std::sync::Arc<String>);

impl miette::SourceCode for SharedSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        self.0
            .as_str()
            .read_span(span, context_lines_before, context_lines_after)
    }
}

/// One problem as a miette diagnostic of its own.
#[derive(Debug, Clone)]
struct Rendered {
    problem: Problem,
    warning: bool,
    source: NamedSource<SharedSource>,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problem.span.is_none() && self.problem.line > 0 {
            write!(f, "line {}: ", self.problem.line)?;
        }
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn severity(&self) -> Option<miette::Severity> {
        self.warning.then_some(miette::Severity::Warning)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem
            .hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.problem
            .span
            .map(|_| &self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (offset, len) = self.problem.span?;
        let span = SourceSpan::from((offset, len));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".to_owned()),
            span,
        ))))
    }
}
