//! The brackets themselves: what each solid code byte opens, closes or
//! ends, and whether that breaks a rule of the module's list.

use super::BracketGuard;

/// An open bracket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Open {
    pub(super) bracket: u8,
    /// A `(` right after the keyword `for`: its `;`s are allowed.
    pub(super) for_header: bool,
    /// A `(` not right after an identifier (a call's or a keyword's, other
    /// than `return`) with only identifiers, blanks and `*` inside so far:
    /// it may be a cast, and its `)` may be followed by a compound
    /// literal's `{`.
    pub(super) cast: bool,
    /// A `{` of a list (an initializer or an `enum`'s body), not a block:
    /// its items end with `,`, not `;`.
    pub(super) list: bool,
    /// The `{` of `extern "C" {`: top-level declarations inside.
    pub(super) linkage: bool,
    /// A `(` right after the keyword `if`: its `)` is followed by the if's
    /// body.
    pub(super) if_header: bool,
    /// The `{` of an `if`'s body: after its `}` an `else` may come.
    pub(super) if_block: bool,
}

impl Open {
    pub(super) fn new(bracket: u8) -> Open {
        Open {
            bracket,
            for_header: false,
            cast: false,
            list: false,
            linkage: false,
            if_header: false,
            if_block: false,
        }
    }
}

/// Where an `if`'s body stands (for where `else` may come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IfBody {
    None,
    /// The `if (...)` header just closed at this depth of brackets: a `{`
    /// opens the body, anything else starts a body without braces.
    Next(usize),
    /// A body without braces at this depth: it ends with the `;` or the
    /// `}` that comes back to this depth.
    Braceless(usize),
}

impl BracketGuard {
    /// A byte of code that is not a blank, right after an `if`'s header:
    /// the body has started without braces (a `{` is taken before).
    pub(super) fn body_starts(&mut self) {
        if let IfBody::Next(depth) = self.if_body
            && self.stack.len() == depth
        {
            self.if_body = IfBody::Braceless(depth);
        }
    }

    /// A solid code byte outside preprocessor lines.
    pub(super) fn bracket(&mut self, code: u8, strict: bool) -> bool {
        let prev = self.prev_solid;
        // Only the byte that ends an `if`'s body lets `else` come next (a
        // `/` may open a comment: `} /* x */ else`).
        if code != b'/' {
            self.else_ok = false;
        }
        if code != b'{' {
            self.body_starts();
        }
        if code != b'*' && code != b')' {
            // Anything but identifiers and `*` inside: not a cast.
            if let Some(top) = self.stack.last_mut() {
                top.cast = false;
            }
        }
        if matches!(code, b';' | b'(' | b')' | b'[' | b']' | b'{' | b'}') {
            self.enum_pending = std::mem::take(&mut self.enum_pending) && code == b'{';
        }
        let top = self.stack.last().copied();
        let top_is = |b: u8| top.is_some_and(|o| o.bracket == b);
        match code {
            b'(' => {
                let mut open = Open::new(code);
                open.for_header = self.word.is_some_and(|w| w.is("for"));
                open.if_header = self.word.is_some_and(|w| w.is("if"));
                let after_word = prev.is_ascii_alphanumeric() || prev == b'_';
                open.cast = !after_word || self.word.is_some_and(|w| w.is("return"));
                self.stack.push(open);
            }
            b'[' => self.stack.push(Open::new(code)),
            b'{' => {
                let literal = prev == b')' && self.closed_cast;
                if strict && (top_is(b'[') || (top_is(b'(') && !literal)) {
                    return false;
                }
                let mut open = Open::new(code);
                open.linkage = self.word.is_some_and(|w| w.is("extern"));
                if self.if_body == IfBody::Next(self.stack.len()) {
                    open.if_block = true;
                    self.if_body = IfBody::None;
                }
                open.list = matches!(prev, b'=' | b',')
                    || (prev == b'{' && top.is_some_and(|o| o.list))
                    || literal
                    || self.enum_pending;
                self.enum_pending = false;
                self.stack.push(open);
            }
            b')' | b']' | b'}' => {
                let opener = match code {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                let matches = top_is(opener);
                let crosses_if = code == b'}'
                    && self
                        .conditionals
                        .last()
                        .is_some_and(|&depth| self.stack.len() <= depth);
                // A block's statements end with `;` or `}` (or it is empty,
                // or a label ends it).
                let unfinished_statement = code == b'}'
                    && top.is_some_and(|o| !o.list)
                    && !matches!(prev, b';' | b'{' | b'}' | b':');
                if strict && (!matches || crosses_if || unfinished_statement) {
                    return false;
                }
                if matches && let Some(open) = self.stack.pop() {
                    self.closed_cast = open.cast;
                    if open.if_header {
                        self.if_body = IfBody::Next(self.stack.len());
                    }
                    if open.if_block {
                        self.else_ok = true;
                    } else if code == b'}' {
                        self.braceless_body_ends();
                    }
                }
            }
            b';' => {
                let refused = top_is(b'[')
                    || top.is_some_and(|o| o.list)
                    || (top_is(b'(') && !top.is_some_and(|o| o.for_header));
                if refused && strict {
                    return false;
                }
                self.braceless_body_ends();
            }
            _ => {}
        }
        true
    }

    /// A `;` or `}` that may end an `if`'s body without braces.
    pub(super) fn braceless_body_ends(&mut self) {
        if let IfBody::Braceless(depth) = self.if_body
            && self.stack.len() == depth
        {
            self.if_body = IfBody::None;
            self.else_ok = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn guard(prompt: &str) -> BracketGuard {
        BracketGuard::after_prompt(prompt)
    }

    #[test]
    pub(super) fn closers_must_match_the_innermost_opener() {
        let g = guard("int f(int a){\n  if( g(a");
        assert!(g.allows(b")"));
        assert!(!g.allows(b"}"));
        assert!(!g.allows(b"]"));
        assert!(g.allows(b"))"));
        assert!(!g.allows(b")))"), "the third `)` would close the brace");
        assert!(g.allows(b")){ }"));
        assert!(g.allows(b")){ }\n}"));
        assert!(!g.allows(b")){ }\n}}"), "nothing left to close");
        // In comments and literals brackets do not count.
        assert!(g.allows(b" /* } */ , \"]\", ']')"));
    }

    #[test]
    pub(super) fn statements_and_blocks_do_not_start_inside_parentheses() {
        let g = guard("void f(void){\n  x = g(a");
        assert!(!g.allows(b";"));
        assert!(!g.allows(b" {"));
        assert!(g.allows(b");"));
        assert!(g.allows(b", (Point){1, 2});"), "a compound literal");
        let g = guard("void f(void){\n  for(i=0");
        assert!(g.allows(b"; i<n; i++){"));
        let g = guard("void f(void){\n  for (i=0");
        assert!(g.allows(b"; i<n; i++) {"), "a blank between `for` and `(`");
        let g = guard("void f(void){\n  format(i=0");
        assert!(!g.allows(b";"), "only `for` itself");
        let g = guard("void f(void){\n  x = a[i");
        assert!(!g.allows(b";"));
        assert!(!g.allows(b"{"));
        assert!(g.allows(b"];"));
    }

    #[test]
    pub(super) fn blocks_end_after_a_statement_and_lists_after_an_item() {
        let g = guard("int f(int a){\n  x = a");
        assert!(!g.allows(b"\n}"), "the statement lacks its `;`");
        assert!(g.allows(b";\n}"));
        assert!(g.allows(b";\n  if( a ){ }\n}"), "an empty block");
        assert!(g.allows(b";\n  end:\n}"), "a label");
        assert!(!g.allows(b";\n  if( a ){ b() }"));
        // Initializers and enums are lists: items, commas, no `;` inside.
        let g = guard("void f(void){\n  static const int a[] = {1, 2");
        assert!(g.allows(b"};\n}"));
        assert!(g.allows(b", };\n}"), "a trailing comma");
        assert!(!g.allows(b";"));
        let g = guard("void f(void){\n  int m[2][2] = { {1, 2}, {3");
        assert!(g.allows(b", 4} };\n}"));
        assert!(!g.allows(b", 4}; };"));
        let g = guard("enum color { RED, GREEN");
        assert!(g.allows(b" };"));
        assert!(!g.allows(b"; };"));
        let g = guard("struct point { int x");
        assert!(!g.allows(b" }"), "a struct's members end with `;`");
        assert!(g.allows(b"; int y; };"));
        // A compound literal is a list; `if (...)` opens a block.
        let g = guard("void f(void){\n  p = (Point){1, 2");
        assert!(g.allows(b"};\n}"));
        let g = guard("Point f(void){\n  return (Point){1, 2");
        assert!(g.allows(b"};\n}"));
        let g = guard("void f(void){\n  if (x){ y = 1");
        assert!(!g.allows(b"}"));
        assert!(g.allows(b"; }\n}"));
    }

    #[test]
    pub(super) fn only_a_cast_is_followed_by_a_brace_inside_parentheses() {
        let g = guard("void f(void){\n  g(a, (struct point *)");
        assert!(g.allows(b"{1, 2});\n}"), "a compound literal argument");
        let g = guard("void f(void){\n  if( (h(a) || (g(b))");
        assert!(!g.allows(b"{"), "`(g(b))` holds a call: no cast");
        let g = guard("void f(void){\n  g(a, h(b)");
        assert!(!g.allows(b"{"), "a call's parentheses are no cast");
        let g = guard("void f(void){\n  g(a, (b + c)");
        assert!(!g.allows(b"{"), "an expression is no cast");
    }

    #[test]
    pub(super) fn else_comes_only_after_an_ifs_body() {
        let g = guard("int f(int a){\n");
        assert!(g.allows(b"  if( a ){\n    a++;\n  }else{\n    a--;\n  }\n}"));
        assert!(
            g.allows(b"  if( a ) a++;\n  else a--;\n}"),
            "bodies without braces"
        );
        assert!(g.allows(b"  if( a ) while( a ){ a--; }\n  else a++;\n}"));
        assert!(g.allows(b"  if( a ){ a++; }else if( a>1 ){ a--; }else{ a=0; }\n}"));
        assert!(g.allows(b"  if( a ){ a++; } /* done */\n  else a--;\n}"));
        assert!(g.allows(b"  if( a ){\n#ifdef X\n    a++;\n#endif\n  }\n  else a--;\n}"));
        assert!(g.allows(b"  if( a );\n  else a--;\n}"), "an empty body");
        assert!(g.allows(b"  if( g(a) && (a>1) ){ a++; }else{ a--; }\n}"));
        assert!(
            !g.allows(b"  while( a ){\n    a--;\n  }else{"),
            "after a while"
        );
        assert!(!g.allows(b"  {\n    a--;\n  }else"), "after a plain block");
        assert!(!g.allows(b"  a++;\n  else"), "after a statement");
        assert!(
            !g.allows(b"  if( a ){ a++; }else{ a--; }else"),
            "a second else"
        );
        assert!(!g.allows(b"  if( a ){ a++; } a--; else"));
        assert!(!g.allows(b"  if( a ){ a++; }\n  b = 1;\n  else"));
        // Refused however the word is split into tokens, as soon as it is
        // complete: the token cannot wait for the next byte, so a name
        // that starts with it (`elsewhere`, rare) is refused there too.
        let g = guard("int f(int a){\n  a++;\n  el");
        assert!(!g.allows(b"se"));
        assert!(g.allows(b"s"));
        assert!(g.allows(b"bow = 1;"));
        let g = guard("int f(int a){\n  if( a ){ a++; }\n  el");
        assert!(g.allows(b"se"));
    }
}
