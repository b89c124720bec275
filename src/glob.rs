//! Redis's glob rules (`stringmatchlen` in util.c), over bytes: `*`, `?`, `[abc]`,
//! `[^a-z]`, `\x` escapes; a class left open runs to the end of the pattern. Matching
//! backtracks only to the last `*`, so it is linear-ish, never exponential.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    Byte(u8),
    Class { negate: bool, items: Vec<(u8, u8)> },
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
    /// The pattern as given.
    pattern: Vec<u8>,
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Glob {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            match pattern[i] {
                b'*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    i += 1;
                }
                b'?' => {
                    tokens.push(Token::Any);
                    i += 1;
                }
                b'\\' if i + 1 < pattern.len() => {
                    tokens.push(Token::Byte(pattern[i + 1]));
                    i += 2;
                }
                b'[' => {
                    i += 1;
                    let negate = pattern.get(i) == Some(&b'^');
                    if negate {
                        i += 1;
                    }
                    let mut items = Vec::new();
                    while i < pattern.len() {
                        let c = pattern[i];
                        if c == b'\\' && i + 1 < pattern.len() {
                            items.push((pattern[i + 1], pattern[i + 1]));
                            i += 2;
                        } else if c == b']' {
                            i += 1;
                            break;
                        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
                            let (a, b) = (c, pattern[i + 2]);
                            items.push((a.min(b), a.max(b)));
                            i += 3;
                        } else {
                            items.push((c, c));
                            i += 1;
                        }
                    }
                    tokens.push(Token::Class { negate, items });
                }
                c => {
                    tokens.push(Token::Byte(c));
                    i += 1;
                }
            }
        }
        Glob { tokens, pattern: pattern.to_vec() }
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    pub fn is_match(&self, s: &[u8]) -> bool {
        let t = &self.tokens;
        let (mut ti, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if ti < t.len() {
                match &t[ti] {
                    Token::Star => {
                        star = Some((ti, si));
                        ti += 1;
                        continue;
                    }
                    tok if one(tok, s[si]) => {
                        ti += 1;
                        si += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            match star {
                Some((st, ss)) => {
                    ti = st + 1;
                    si = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            }
        }
        t[ti..].iter().all(|tok| *tok == Token::Star)
    }
}

fn one(tok: &Token, c: u8) -> bool {
    match tok {
        Token::Star => false,
        Token::Any => true,
        Token::Byte(b) => *b == c,
        Token::Class { negate, items } => items.iter().any(|&(a, b)| a <= c && c <= b) != *negate,
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p.as_bytes()).is_match(s.as_bytes())
    }

    #[test]
    fn redis_glob_rules() {
        assert!(m("*", ""));
        assert!(m("user:*", "user:1"));
        assert!(!m("user:*", "use"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c*", "xxaxxcxxbxx"));
        assert!(!m("ab[", "ab"));
        assert!(m("ab[cd", "abc"));
        assert!(Glob::new(b"\xff*").is_match(b"\xff\x00"));
    }
}
