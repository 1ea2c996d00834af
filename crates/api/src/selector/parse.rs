//! Lexer and recursive-descent parser for the label selector string grammar of upstream
//! `labels.Parse`:
//!
//! ```text
//! selector    ::= requirement | requirement "," selector
//! requirement ::= ["!"] KEY [ ("in" | "notin") "(" VALUES ")" | ("=" | "==" | "!=" | ">" | "<") VALUE ]
//! ```
//!
//! Whitespace separates tokens; `in`/`notin` are keywords only where an operator is expected,
//! so `in in (in)` is a valid requirement on the key `in`.

use std::collections::BTreeSet;

use super::SelectorError;
use super::label::{Operator, Requirement, check_key};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosedPar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    In,
    NotIn,
    Identifier,
}

/// Where the parser is: in value position `in`/`notin` are ordinary identifiers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the input into tokens with their literal text; always ends with [`Tok::End`].
/// Special symbols are matched longest-first (`!=`, `==` before `!`, `=`), like upstream.
fn lex(input: &str) -> Vec<(Tok, &str)> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_space(b) {
            i += 1;
            continue;
        }
        if is_special(b) {
            let two = input.get(i..i + 2);
            let (tok, len) = match (two, b) {
                (Some("!="), _) => (Tok::NotEquals, 2),
                (Some("=="), _) => (Tok::DoubleEquals, 2),
                (_, b'!') => (Tok::Not, 1),
                (_, b'=') => (Tok::Equals, 1),
                (_, b'(') => (Tok::OpenPar, 1),
                (_, b')') => (Tok::ClosedPar, 1),
                (_, b',') => (Tok::Comma, 1),
                (_, b'>') => (Tok::Greater, 1),
                _ => (Tok::Less, 1),
            };
            tokens.push((tok, &input[i..i + len]));
            i += len;
            continue;
        }
        // Identifiers end at ASCII bytes only, so the slice stays on UTF-8 boundaries.
        let start = i;
        while i < bytes.len() && !is_space(bytes[i]) && !is_special(bytes[i]) {
            i += 1;
        }
        let word = &input[start..i];
        let tok = match word {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Identifier,
        };
        tokens.push((tok, word));
    }
    tokens.push((Tok::End, ""));
    tokens
}

struct Parser<'a> {
    tokens: Vec<(Tok, &'a str)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self, ctx: Ctx) -> (Tok, &'a str) {
        let (tok, lit) = self.tokens.get(self.pos).copied().unwrap_or((Tok::End, ""));
        match tok {
            Tok::In | Tok::NotIn if ctx == Ctx::Values => (Tok::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn next(&mut self, ctx: Ctx) -> (Tok, &'a str) {
        let item = self.peek(ctx);
        self.pos += 1;
        item
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_inferred_operator()?;
        if let Some(op) = unary {
            return Requirement::checked(key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::checked(key, op, values.into_iter().collect())
    }

    /// Reads `[!]KEY`; a key followed by `,` or the end means Exists (or DoesNotExist with `!`).
    fn key_and_inferred_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let (mut tok, mut lit) = self.next(Ctx::Values);
        let mut op = None;
        if tok == Tok::Not {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.next(Ctx::Values);
        }
        if tok != Tok::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        check_key(lit)?;
        if matches!(self.peek(Ctx::Values).0, Tok::End | Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.next(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::NotEquals => Operator::NotEquals,
            Tok::Greater => Operator::GreaterThan,
            Tok::Less => Operator::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `( values )`, where empty entries (`()`, `(a,,b)`, `(,a)`) stand for the empty value.
    fn value_set(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.next(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.peek(Ctx::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let values = self.identifier_list()?;
                let (tok, closing) = self.next(Ctx::Values);
                if tok != Tok::ClosedPar {
                    return Err(format!("found '{closing}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::ClosedPar => {
                self.next(Ctx::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifier_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let (tok, lit) = self.next(Ctx::Values);
            match tok {
                Tok::Identifier => {
                    values.insert(lit.to_string());
                    let (after, after_lit) = self.peek(Ctx::Values);
                    match after {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{after_lit}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.peek(Ctx::Values).0 {
                        Tok::ClosedPar => {
                            values.insert(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next(Ctx::Values);
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>`, `<`; nothing before `,`/end means "".
    fn exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        if matches!(self.peek(Ctx::Values).0, Tok::End | Tok::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.next(Ctx::Values) {
            (Tok::Identifier, lit) => Ok(BTreeSet::from([lit.to_string()])),
            (_, lit) => Err(format!("found '{lit}', expected: identifier")),
        }
    }
}

/// Parses a selector string into requirements in source order.
pub(super) fn parse(input: &str) -> Result<Vec<Requirement>, SelectorError> {
    let mut p = Parser {
        tokens: lex(input),
        pos: 0,
    };
    let mut requirements = Vec::new();
    loop {
        let (tok, lit) = p.peek(Ctx::Values);
        match tok {
            Tok::Identifier | Tok::Not => {
                requirements.push(p.requirement().map_err(SelectorError::Requirement)?);
                let (tok, lit) = p.next(Ctx::Values);
                match tok {
                    Tok::End => return Ok(requirements),
                    Tok::Comma => {
                        let (after, after_lit) = p.peek(Ctx::Values);
                        if !matches!(after, Tok::Identifier | Tok::Not) {
                            return Err(SelectorError::Syntax(format!(
                                "found '{after_lit}', expected: identifier after ','"
                            )));
                        }
                    }
                    _ => {
                        return Err(SelectorError::Syntax(format!(
                            "found '{lit}', expected: ',' or 'end of string'"
                        )));
                    }
                }
            }
            Tok::End => return Ok(requirements),
            _ => {
                return Err(SelectorError::Syntax(format!(
                    "found '{lit}', expected: !, identifier, or 'end of string'"
                )));
            }
        }
    }
}
