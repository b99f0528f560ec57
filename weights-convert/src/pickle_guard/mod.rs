//! An allow-list check of the pickles inside a PyTorch checkpoint, run before anything is
//! parsed.
//!
//! `pytorch-reader` never executes a pickle, but it accepts any global a pickle names and
//! keeps it as an opaque object. A checkpoint that references `os.system` is hostile whatever
//! our reader does with it (Python's `torch.load` would have run it), so it is refused here
//! with the name of the global, and nothing of it is read.
//!
//! The check walks every opcode of every pickle in the file with a small abstract stack
//! machine that knows only which stack items are strings. That is enough to resolve the
//! operands of `STACK_GLOBAL` (protocol 4), including strings fetched back from the memo.
//! Opcodes that reach a callable without naming it (`INST`, `OBJ`, `NEWOBJ`, the extension
//! registry, out-of-band buffers) are refused outright: a tensor state dict never uses them.

use std::collections::HashMap;

/// Globals a tensor state dict (and the optimiser state saved beside it) may reference.
pub const ALLOWED_GLOBALS: &[&str] = &[
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage",
    "builtins.set",
    "builtins.frozenset",
];

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The pickle names a global outside [`ALLOWED_GLOBALS`].
    #[error(
        "the pickle references the global `{global}` (byte {offset}), which a tensor state \
         dict never needs; refused without executing anything"
    )]
    ForbiddenGlobal { global: String, offset: usize },
    /// The pickle uses an opcode a state dict never needs.
    #[error(
        "pickle opcode 0x{opcode:02x} ({name}) at byte {offset} is not allowed in a tensor \
         state dict; refused without executing anything"
    )]
    ForbiddenOpcode { opcode: u8, name: &'static str, offset: usize },
    /// The data ends inside the pickle.
    #[error("the pickle is truncated: it ends at byte {offset} before its STOP opcode")]
    Truncated { offset: usize },
    /// The bytes are not a well-formed pickle.
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed { reason: String, offset: usize },
}

/// What the walk learnt of one pickle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PickleSummary {
    /// Offset just past the pickle's `STOP` opcode.
    pub end: usize,
    /// Every global the pickle references, in order of appearance (`module.name`).
    pub globals: Vec<String>,
    /// True when the pickle is exactly the legacy-format magic number
    /// `0x1950a86a20f9469cfc6c` (the first pickle of a pre-1.6 `torch.save` file).
    pub is_legacy_magic: bool,
}

#[derive(Clone, Debug)]
enum Item {
    Mark,
    Str(String),
    Other,
}

const LEGACY_MAGIC_LE: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_MAGIC_TEXT: &str = "119547037146038801333356";

struct Walker<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: HashMap<u64, Item>,
    globals: Vec<String>,
    ops: usize,
    saw_magic: bool,
}

fn malformed<T>(reason: impl Into<String>, offset: usize) -> Result<T, GuardError> {
    Err(GuardError::Malformed { reason: reason.into(), offset })
}

impl<'a> Walker<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GuardError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GuardError::Truncated { offset: self.data.len() }),
        }
    }

    fn uint(&mut self, n: usize) -> Result<u64, GuardError> {
        let b = self.take(n)?;
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate() {
            v |= (x as u64) << (8 * i);
        }
        Ok(v)
    }

    fn len_prefixed(&mut self, n: usize) -> Result<&'a [u8], GuardError> {
        let at = self.pos;
        let len = self.uint(n)?;
        let len = usize::try_from(len).or_else(|_| malformed("length overflows", at))?;
        self.take(len)
    }

    fn line(&mut self) -> Result<&'a [u8], GuardError> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let s = &rest[..i];
                self.pos += i + 1;
                Ok(s)
            }
            None => Err(GuardError::Truncated { offset: self.data.len() }),
        }
    }

    fn pop(&mut self, at: usize) -> Result<Item, GuardError> {
        match self.stack.pop() {
            Some(item) => Ok(item),
            None => malformed("stack underflow", at),
        }
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Item>, GuardError> {
        match self.stack.iter().rposition(|i| matches!(i, Item::Mark)) {
            Some(m) => {
                let items = self.stack.split_off(m + 1);
                self.stack.pop();
                Ok(items)
            }
            None => malformed("no MARK on the stack", at),
        }
    }

    fn top(&self, at: usize) -> Result<Item, GuardError> {
        match self.stack.last() {
            Some(i) => Ok(i.clone()),
            None => malformed("stack underflow", at),
        }
    }

    fn check_global(&mut self, module: &str, name: &str, at: usize) -> Result<(), GuardError> {
        let global = format!("{module}.{name}");
        if !ALLOWED_GLOBALS.contains(&global.as_str()) {
            return Err(GuardError::ForbiddenGlobal { global, offset: at });
        }
        self.globals.push(global);
        Ok(())
    }

    fn text(bytes: &[u8], at: usize) -> Result<String, GuardError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => malformed("text argument is not UTF-8", at),
        }
    }

    fn memo_key(&mut self, bytes: &[u8], at: usize) -> Result<u64, GuardError> {
        let s = Self::text(bytes, at)?;
        s.trim().parse::<u64>().or_else(|_| malformed("bad memo index", at))
    }

    /// Walks one pickle from `self.pos` to its `STOP`.
    fn run(&mut self) -> Result<(), GuardError> {
        loop {
            let at = self.pos;
            self.ops += 1;
            let op = self.take(1)?[0];
            match op {
                // Framing and protocol: no stack effect.
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return Ok(()),
                // Strings.
                0x8c => {
                    let s = self.len_prefixed(1)?;
                    self.stack.push(Item::Str(Self::text(s, at)?));
                }
                b'X' => {
                    let s = self.len_prefixed(4)?;
                    self.stack.push(Item::Str(Self::text(s, at)?));
                }
                0x8d => {
                    let s = self.len_prefixed(8)?;
                    self.stack.push(Item::Str(Self::text(s, at)?));
                }
                b'V' => {
                    let s = self.line()?;
                    self.stack.push(Item::Str(Self::text(s, at)?));
                }
                b'S' => {
                    let s = self.line()?;
                    let s = Self::text(s, at)?;
                    let s = s.trim_matches(|c| c == '\'' || c == '"').to_string();
                    self.stack.push(Item::Str(s));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' { 4 } else { 1 };
                    let s = self.len_prefixed(n)?;
                    self.stack.push(Item::Str(String::from_utf8_lossy(s).into_owned()));
                }
                // Other scalars and empty containers.
                b'I' | b'F' => {
                    self.line()?;
                    self.stack.push(Item::Other);
                }
                b'L' => {
                    let s = self.line()?;
                    let text = String::from_utf8_lossy(s);
                    if text.trim_end_matches('L') == LEGACY_MAGIC_TEXT {
                        self.saw_magic = true;
                    }
                    self.stack.push(Item::Other);
                }
                b'J' => {
                    self.take(4)?;
                    self.stack.push(Item::Other);
                }
                b'K' => {
                    self.take(1)?;
                    self.stack.push(Item::Other);
                }
                b'M' => {
                    self.take(2)?;
                    self.stack.push(Item::Other);
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Item::Other);
                }
                0x8a => {
                    let b = self.len_prefixed(1)?;
                    if b == LEGACY_MAGIC_LE {
                        self.saw_magic = true;
                    }
                    self.stack.push(Item::Other);
                }
                0x8b => {
                    self.len_prefixed(4)?;
                    self.stack.push(Item::Other);
                }
                b'B' => {
                    self.len_prefixed(4)?;
                    self.stack.push(Item::Other);
                }
                b'C' => {
                    self.len_prefixed(1)?;
                    self.stack.push(Item::Other);
                }
                0x8e => {
                    self.len_prefixed(8)?;
                    self.stack.push(Item::Other);
                }
                b'N' | 0x88 | 0x89 | b')' | b']' | b'}' | 0x8f => self.stack.push(Item::Other),
                // Stack manipulation.
                b'(' => self.stack.push(Item::Mark),
                b'0' => {
                    self.pop(at)?;
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let t = self.top(at)?;
                    self.stack.push(t);
                }
                // Memo.
                b'g' => {
                    let s = self.line()?;
                    let k = self.memo_key(s, at)?;
                    self.memo_get(k, at)?;
                }
                b'h' => {
                    let k = self.uint(1)?;
                    self.memo_get(k, at)?;
                }
                b'j' => {
                    let k = self.uint(4)?;
                    self.memo_get(k, at)?;
                }
                b'p' => {
                    let s = self.line()?;
                    let k = self.memo_key(s, at)?;
                    let t = self.top(at)?;
                    self.memo.insert(k, t);
                }
                b'q' => {
                    let k = self.uint(1)?;
                    let t = self.top(at)?;
                    self.memo.insert(k, t);
                }
                b'r' => {
                    let k = self.uint(4)?;
                    let t = self.top(at)?;
                    self.memo.insert(k, t);
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    let t = self.top(at)?;
                    self.memo.insert(k, t);
                }
                // Persistent ids (tensor storages).
                b'P' => {
                    self.line()?;
                    self.stack.push(Item::Other);
                }
                b'Q' => {
                    self.pop(at)?;
                    self.stack.push(Item::Other);
                }
                // Globals: the point of the walk.
                b'c' => {
                    let module = Self::text(self.line()?, at)?;
                    let name = Self::text(self.line()?, at)?;
                    self.check_global(&module, &name, at)?;
                    self.stack.push(Item::Other);
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    match (module, name) {
                        (Item::Str(m), Item::Str(n)) => self.check_global(&m, &n, at)?,
                        _ => {
                            return malformed("STACK_GLOBAL operands are not two strings", at);
                        }
                    }
                    self.stack.push(Item::Other);
                }
                // Calls of an already-checked global and building containers.
                b'R' => {
                    self.pop(at)?;
                    self.pop(at)?;
                    self.stack.push(Item::Other);
                }
                b'b' => {
                    self.pop(at)?;
                    self.top(at)?;
                }
                b't' | b'l' | b'd' | 0x91 => {
                    self.pop_mark(at)?;
                    self.stack.push(Item::Other);
                }
                0x85..=0x87 => {
                    for _ in 0..(op - 0x84) {
                        self.pop(at)?;
                    }
                    self.stack.push(Item::Other);
                }
                b'a' => {
                    self.pop(at)?;
                    self.top(at)?;
                }
                b's' => {
                    self.pop(at)?;
                    self.pop(at)?;
                    self.top(at)?;
                }
                b'e' | b'u' | 0x90 => {
                    self.pop_mark(at)?;
                    self.top(at)?;
                }
                _ => {
                    let name = match op {
                        b'i' => "INST",
                        b'o' => "OBJ",
                        0x81 => "NEWOBJ",
                        0x92 => "NEWOBJ_EX",
                        0x82..=0x84 => "EXT",
                        0x96 => "BYTEARRAY8",
                        0x97 => "NEXT_BUFFER",
                        0x98 => "READONLY_BUFFER",
                        _ => {
                            return malformed(format!("unknown opcode 0x{op:02x}"), at);
                        }
                    };
                    return Err(GuardError::ForbiddenOpcode { opcode: op, name, offset: at });
                }
            }
        }
    }

    fn memo_get(&mut self, k: u64, at: usize) -> Result<(), GuardError> {
        match self.memo.get(&k) {
            Some(item) => {
                let item = item.clone();
                self.stack.push(item);
                Ok(())
            }
            None => malformed(format!("memo entry {k} read before it was written"), at),
        }
    }
}

/// Checks the pickle starting at `offset` in `data` and returns what it references and where
/// it ends. Only the allow-listed globals are accepted.
pub fn check_pickle(data: &[u8], offset: usize) -> Result<PickleSummary, GuardError> {
    let mut w = Walker {
        data,
        pos: offset,
        stack: Vec::new(),
        memo: HashMap::new(),
        globals: Vec::new(),
        ops: 0,
        saw_magic: false,
    };
    w.run()?;
    // The magic number pickle is `PROTO, LONG1 <magic>, STOP`: three opcodes.
    let is_legacy_magic = w.saw_magic && w.ops <= 3;
    Ok(PickleSummary { end: w.pos, globals: w.globals, is_legacy_magic })
}

#[cfg(test)]
mod tests;
