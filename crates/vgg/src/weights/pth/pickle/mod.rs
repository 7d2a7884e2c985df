//! A restricted unpickler for PyTorch checkpoints.
//!
//! `torch.load` without `weights_only` runs arbitrary code: any pickled global
//! can be called by `REDUCE`. This reader executes nothing. It understands the
//! protocol-2 opcodes `torch.save` emits (plus the few protocol-4 ones other
//! writers add) and resolves globals against an allow-list:
//! `collections.OrderedDict`, the tensor rebuild functions and the typed storage
//! classes. Any other global is an error that names it. The result is a plain
//! value tree; turning it into tensors is [`super::reader`]'s job.
//!
//! The input is assumed hostile: every claimed length is checked against the
//! bytes actually left before anything is allocated, and the stack, memo,
//! nesting depth, operation count and copy-on-write work are capped, so no
//! input can exhaust memory, overflow the native stack (deep values drop
//! recursively) or run for long.

use std::collections::HashMap;
use std::io::{BufRead, ErrorKind};
use std::rc::Rc;

use super::{DType, PthError};

pub mod opcodes;

use self::opcodes as op;

/// Most values on the stack (marks included) at once.
const MAX_STACK: usize = 1 << 20;
/// Most memo entries; a state_dict needs a few per tensor.
const MAX_MEMO: usize = 1 << 22;
/// Deepest nesting of containers; a checkpoint needs about six.
const MAX_DEPTH: usize = 100;
/// Most opcodes in one pickle (about 30 per tensor in a state_dict).
const MAX_OPS: u64 = 1 << 23;
/// Most elements copied when a shared container is mutated (never happens in
/// what `torch.save` writes, but a crafted pickle could make it quadratic).
const MAX_CLONED: u64 = 1 << 24;
/// Longest `GLOBAL`/`PERSID` text line.
const MAX_LINE: usize = 256;

/// A global the allow-list accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `collections.OrderedDict`: every state_dict is one.
    OrderedDict,
    /// `torch._utils._rebuild_tensor` (old files) and `_rebuild_tensor_v2`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`: an `nn.Parameter` saved directly.
    RebuildParameter,
    /// `torch.<T>Storage` (or `torch.cuda.<T>Storage` in old GPU-saved files):
    /// only ever named inside a persistent id, never called.
    Storage(DType),
}

/// The arguments of a tensor rebuild call, unvalidated beyond their types.
#[derive(Clone)]
pub struct TensorArgs {
    /// The storage argument: in a checkpoint, a [`Value::PersistentId`].
    pub storage: Value,
    /// Offset of the first element, in elements of the storage's dtype.
    pub storage_offset: i64,
    pub shape: Vec<i64>,
    pub strides: Vec<i64>,
}

/// A shared, immutable container with its nesting depth, stored so that the
/// depth cap costs O(1) per insertion instead of a walk over a possibly
/// exponentially shared tree.
#[derive(Clone)]
pub struct Node<T> {
    items: T,
    depth: usize,
}

/// A value produced by the unpickler.
///
/// Containers are reference counted so that memo lookups are cheap; they are
/// copied on write, which keeps the tree acyclic (a hostile pickle cannot make a
/// list contain itself).
#[derive(Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as little-endian two's complement bytes
    /// (only the legacy format's magic number needs one).
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Node<Vec<Value>>>),
    List(Rc<Node<Vec<Value>>>),
    Dict(Rc<Node<Vec<(Value, Value)>>>),
    Global(Global),
    PersistentId(Rc<Node<Value>>),
    Tensor(Rc<Node<TensorArgs>>),
}

impl Value {
    /// A short description for error messages (never the contents, which
    /// could be huge).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::PersistentId(_) => "persistent id",
            Value::Tensor(_) => "tensor",
        }
    }

    /// Text, accepting Python 2 byte strings that are valid UTF-8 (old
    /// checkpoints pickled `str` keys that way).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(t) => Some(&t.items),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(&l.items),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(&d.items),
            _ => None,
        }
    }

    pub fn as_tensor(&self) -> Option<&TensorArgs> {
        match self {
            Value::Tensor(t) => Some(&t.items),
            _ => None,
        }
    }

    pub fn as_persistent_id(&self) -> Option<&Value> {
        match self {
            Value::PersistentId(p) => Some(&p.items),
            _ => None,
        }
    }

    /// The value looked up by `key` in a dict; the last duplicate wins, as a
    /// Python dict would keep it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let items = self.as_dict()?;
        items
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    fn depth(&self) -> usize {
        match self {
            Value::Tuple(n) | Value::List(n) => n.depth,
            Value::Dict(n) => n.depth,
            Value::PersistentId(n) => n.depth,
            Value::Tensor(n) => n.depth,
            _ => 0,
        }
    }

    /// Whether both are the same container object (what a memo entry aliases).
    fn same_object(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Tuple(a), Value::Tuple(b)) | (Value::List(a), Value::List(b)) => {
                Rc::ptr_eq(a, b)
            }
            (Value::Dict(a), Value::Dict(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One unpickled stream.
pub struct Pickle {
    /// The object the pickle returns.
    pub value: Value,
    /// Every persistent id the pickle loaded, in order. The legacy format needs
    /// the dtype of every storage, including those outside the state_dict, to
    /// walk the storage data that follows the pickles.
    pub persistent_ids: Vec<Value>,
    /// Absolute offset just past the `STOP` opcode.
    pub end: u64,
}

/// Unpickles one stream from `reader`, whose first byte sits at absolute
/// offset `start` of a source of `end` bytes. Offsets in errors are absolute.
pub fn load<R: BufRead>(reader: R, start: u64, end: u64) -> Result<Pickle, PthError> {
    Unpickler {
        reader,
        pos: start,
        end,
        op_pos: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        persistent_ids: Vec::new(),
        clone_budget: MAX_CLONED,
    }
    .run()
}

/// A stack entry, remembering the memo key it was stored under or fetched
/// from, so that filling a memoized container also updates the memo (Python
/// shares the object; we share a snapshot and refresh it).
struct Slot {
    value: Value,
    memo_key: Option<u32>,
}

struct Unpickler<R> {
    reader: R,
    /// Absolute offset of the next byte to read.
    pos: u64,
    end: u64,
    /// Offset of the opcode being executed, for error messages.
    op_pos: u64,
    stack: Vec<Slot>,
    /// Stack lengths at each pending `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    persistent_ids: Vec<Value>,
    clone_budget: u64,
}

impl<R: BufRead> Unpickler<R> {
    fn run(mut self) -> Result<Pickle, PthError> {
        for _ in 0..MAX_OPS {
            self.op_pos = self.pos;
            let op = self.read_u8()?;
            if op == op::STOP {
                return self.finish();
            }
            self.step(op)?;
        }
        Err(limit("opcode count", MAX_OPS))
    }

    fn finish(mut self) -> Result<Pickle, PthError> {
        let value = self.pop()?;
        Ok(Pickle {
            value,
            persistent_ids: self.persistent_ids,
            end: self.pos,
        })
    }

    /// Executes one opcode (everything but `STOP`).
    fn step(&mut self, op: u8) -> Result<(), PthError> {
        match op {
            op::PROTO => self.protocol(),
            op::FRAME => self.read_array::<8>().map(drop), // only a buffering hint
            op::EMPTY_DICT => self.push(dict(Vec::new())),
            op::EMPTY_LIST => self.push(Value::List(node(Vec::new(), 1))),
            op::EMPTY_TUPLE => self.push(Value::Tuple(node(Vec::new(), 1))),
            op::MARK => self.mark(),
            op::TUPLE => self.tuple_from_mark(),
            op::TUPLE1 => self.tuple_of(1),
            op::TUPLE2 => self.tuple_of(2),
            op::TUPLE3 => self.tuple_of(3),
            op::LIST => self.list_from_mark(),
            op::DICT => self.dict_from_mark(),
            op::APPEND => self.append(),
            op::APPENDS => self.appends(),
            op::SETITEM => self.setitem(),
            op::SETITEMS => self.setitems(),
            op::BINPUT => {
                let key = self.read_u8()?;
                self.memo_put(u32::from(key))
            }
            op::LONG_BINPUT => {
                let key = u32::from_le_bytes(self.read_array()?);
                self.memo_put(key)
            }
            op::MEMOIZE => self.memoize(),
            op::BINGET => {
                let key = self.read_u8()?;
                self.memo_get(u32::from(key))
            }
            op::LONG_BINGET => {
                let key = u32::from_le_bytes(self.read_array()?);
                self.memo_get(key)
            }
            op::GLOBAL => self.global(),
            op::STACK_GLOBAL => self.stack_global(),
            op::REDUCE => self.reduce(),
            op::NEWOBJ => self.newobj(),
            op::BUILD => self.build(),
            op::BINPERSID => self.binpersid(),
            op::PERSID => self.persid(),
            _ => self.literal(op),
        }
    }

    /// Executes an opcode that pushes a literal (string, bytes, number, `None`, bool).
    fn literal(&mut self, op: u8) -> Result<(), PthError> {
        match op {
            op::BINUNICODE => {
                let len = self.read_u32()?;
                self.unicode(len)
            }
            op::SHORT_BINUNICODE => {
                let len = self.read_u8()?;
                self.unicode(u64::from(len))
            }
            op::BINUNICODE8 => {
                let len = u64::from_le_bytes(self.read_array()?);
                self.unicode(len)
            }
            op::BINSTRING => self.binstring(),
            op::SHORT_BINSTRING => {
                let len = self.read_u8()?;
                self.legacy_string(u64::from(len))
            }
            op::BINBYTES => {
                let len = self.read_u32()?;
                self.bytes(len)
            }
            op::SHORT_BINBYTES => {
                let len = self.read_u8()?;
                self.bytes(u64::from(len))
            }
            op::BININT => {
                let int = i32::from_le_bytes(self.read_array()?);
                self.push(Value::Int(i64::from(int)))
            }
            op::BININT1 => {
                let int = self.read_u8()?;
                self.push(Value::Int(i64::from(int)))
            }
            op::BININT2 => {
                let int = u16::from_le_bytes(self.read_array()?);
                self.push(Value::Int(i64::from(int)))
            }
            op::LONG1 => self.long1(),
            op::BINFLOAT => {
                let float = f64::from_be_bytes(self.read_array()?);
                self.push(Value::Float(float))
            }
            op::NONE => self.push(Value::None),
            op::NEWTRUE => self.push(Value::Bool(true)),
            op::NEWFALSE => self.push(Value::Bool(false)),
            _ => Err(PthError::UnknownOpcode {
                opcode: op,
                name: unsupported_opcode_name(op),
                pos: self.op_pos,
            }),
        }
    }

    // --- input ---------------------------------------------------------

    fn read_into(&mut self, buf: &mut [u8]) -> Result<(), PthError> {
        let needed = buf.len() as u64;
        let available = self.end.saturating_sub(self.pos);
        let truncated = PthError::Truncated {
            what: "pickle data",
            offset: self.pos,
            needed,
            available,
        };
        if needed > available {
            return Err(truncated);
        }
        match self.reader.read_exact(buf) {
            Ok(()) => {
                self.pos += needed;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(truncated),
            Err(e) => Err(PthError::Io(e)),
        }
    }

    fn read_u8(&mut self) -> Result<u8, PthError> {
        Ok(self.read_array::<1>()?[0])
    }

    fn read_u32(&mut self) -> Result<u64, PthError> {
        Ok(u64::from(u32::from_le_bytes(self.read_array()?)))
    }

    fn read_array<const N: usize>(&mut self) -> Result<[u8; N], PthError> {
        let mut buf = [0u8; N];
        self.read_into(&mut buf)?;
        Ok(buf)
    }

    /// Reads `len` claimed bytes, checking the claim against what is left
    /// before allocating.
    fn read_vec(&mut self, len: u64) -> Result<Vec<u8>, PthError> {
        let available = self.end.saturating_sub(self.pos);
        let size = usize::try_from(len).ok().filter(|_| len <= available);
        let Some(size) = size else {
            return Err(PthError::Truncated {
                what: "pickle string",
                offset: self.pos,
                needed: len,
                available,
            });
        };
        let mut buf = vec![0u8; size];
        self.read_into(&mut buf)?;
        Ok(buf)
    }

    /// Reads a newline-terminated text argument (`GLOBAL`, `PERSID`).
    fn read_line(&mut self) -> Result<String, PthError> {
        let mut line = Vec::new();
        loop {
            match self.read_u8()? {
                b'\n' => break,
                _ if line.len() >= MAX_LINE => return Err(self.malformed("text argument too long")),
                byte => line.push(byte),
            }
        }
        String::from_utf8(line).map_err(|_| self.malformed("text argument is not UTF-8"))
    }

    // --- stack -----------------------------------------------------------

    fn push(&mut self, value: Value) -> Result<(), PthError> {
        self.push_slot(Slot {
            value,
            memo_key: None,
        })
    }

    fn push_slot(&mut self, slot: Slot) -> Result<(), PthError> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return Err(limit("stack size", MAX_STACK as u64));
        }
        self.stack.push(slot);
        Ok(())
    }

    /// Start of the current mark frame: pops never reach below it.
    fn frame_base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value, PthError> {
        if self.stack.len() <= self.frame_base() {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .pop()
            .map(|slot| slot.value)
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn mark(&mut self) -> Result<(), PthError> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return Err(limit("stack size", MAX_STACK as u64));
        }
        self.marks.push(self.stack.len());
        Ok(())
    }

    /// Pops everything above the most recent `MARK`, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PthError> {
        let base = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK to pop to"))?;
        let items = self.stack.split_off(base.min(self.stack.len()));
        Ok(items.into_iter().map(|slot| slot.value).collect())
    }

    /// Index of the top value of the current frame (the target of `APPEND`,
    /// `SETITEM`, `BUILD`…).
    fn top_index(&self) -> Result<usize, PthError> {
        match self.stack.len().checked_sub(1) {
            Some(top) if top >= self.frame_base() => Ok(top),
            _ => Err(self.malformed("stack underflow")),
        }
    }

    // --- opcodes -----------------------------------------------------------

    fn protocol(&mut self) -> Result<(), PthError> {
        let version = self.read_u8()?;
        if version > 5 {
            return Err(self.malformed(&format!("unknown pickle protocol {version}")));
        }
        Ok(())
    }

    fn unicode(&mut self, len: u64) -> Result<(), PthError> {
        let bytes = self.read_vec(len)?;
        let text = String::from_utf8(bytes).map_err(|_| self.malformed("string is not UTF-8"))?;
        self.push(Value::Str(text.into()))
    }

    fn binstring(&mut self) -> Result<(), PthError> {
        let len = i32::from_le_bytes(self.read_array()?);
        let len = u64::try_from(len).map_err(|_| self.malformed("negative string length"))?;
        self.legacy_string(len)
    }

    /// A Python 2 `str`: text when it is UTF-8 (what `torch.load` decodes it
    /// to), raw bytes otherwise.
    fn legacy_string(&mut self, len: u64) -> Result<(), PthError> {
        let bytes = self.read_vec(len)?;
        match String::from_utf8(bytes) {
            Ok(text) => self.push(Value::Str(text.into())),
            Err(e) => self.push(Value::Bytes(e.into_bytes().into())),
        }
    }

    fn bytes(&mut self, len: u64) -> Result<(), PthError> {
        let bytes = self.read_vec(len)?;
        self.push(Value::Bytes(bytes.into()))
    }

    fn long1(&mut self) -> Result<(), PthError> {
        let len = self.read_u8()?;
        let bytes = self.read_vec(u64::from(len))?;
        let value = match bytes.last() {
            None => Value::Int(0),
            Some(&last) if bytes.len() <= 8 => {
                let fill = if last & 0x80 == 0 { 0 } else { 0xff };
                let mut wide = [fill; 8];
                wide.iter_mut().zip(&bytes).for_each(|(w, b)| *w = *b);
                Value::Int(i64::from_le_bytes(wide))
            }
            Some(_) => Value::BigInt(bytes.into()),
        };
        self.push(value)
    }

    fn tuple_from_mark(&mut self) -> Result<(), PthError> {
        let items = self.pop_mark()?;
        self.push_tuple(items)
    }

    fn tuple_of(&mut self, count: usize) -> Result<(), PthError> {
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.pop()?);
        }
        items.reverse();
        self.push_tuple(items)
    }

    fn push_tuple(&mut self, items: Vec<Value>) -> Result<(), PthError> {
        let depth = container_depth(items.iter())?;
        self.push(Value::Tuple(node(items, depth)))
    }

    fn list_from_mark(&mut self) -> Result<(), PthError> {
        let items = self.pop_mark()?;
        let depth = container_depth(items.iter())?;
        self.push(Value::List(node(items, depth)))
    }

    fn dict_from_mark(&mut self) -> Result<(), PthError> {
        let items = self.pop_mark()?;
        let pairs = self.pairs(items)?;
        let depth = container_depth(pairs.iter().flat_map(|(k, v)| [k, v]))?;
        self.push(Value::Dict(node(pairs, depth)))
    }

    fn append(&mut self) -> Result<(), PthError> {
        let item = self.pop()?;
        self.extend_top(vec![item])
    }

    fn appends(&mut self) -> Result<(), PthError> {
        let items = self.pop_mark()?;
        self.extend_top(items)
    }

    fn setitem(&mut self) -> Result<(), PthError> {
        let value = self.pop()?;
        let key = self.pop()?;
        self.insert_top(vec![(key, value)])
    }

    fn setitems(&mut self) -> Result<(), PthError> {
        let items = self.pop_mark()?;
        let pairs = self.pairs(items)?;
        self.insert_top(pairs)
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PthError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("odd number of items for a dict"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            pairs.push((key, value));
        }
        Ok(pairs)
    }

    /// `APPEND`/`APPENDS` onto the list on top of the stack.
    fn extend_top(&mut self, items: Vec<Value>) -> Result<(), PthError> {
        let depth = container_depth(items.iter())?;
        let pos = self.op_pos;
        self.mutate_top(|value, budget| match value {
            Value::List(list) => {
                let list = make_mut(list, budget)?;
                list.items.extend(items);
                list.depth = list.depth.max(depth);
                Ok(())
            }
            other => Err(PthError::Pickle {
                pos,
                msg: format!("APPEND to a {}, expected a list", other.kind()),
            }),
        })
    }

    /// `SETITEM`/`SETITEMS` into the dict on top of the stack.
    fn insert_top(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PthError> {
        let depth = container_depth(pairs.iter().flat_map(|(k, v)| [k, v]))?;
        let pos = self.op_pos;
        self.mutate_top(|value, budget| match value {
            Value::Dict(map) => {
                let map = make_mut(map, budget)?;
                map.items.extend(pairs);
                map.depth = map.depth.max(depth);
                Ok(())
            }
            other => Err(PthError::Pickle {
                pos,
                msg: format!("SETITEM on a {}, expected a dict", other.kind()),
            }),
        })
    }

    /// Mutates the top value in place, keeping its memo entry (if it still
    /// aliases the value) pointing at the updated container. Detaching the memo
    /// entry first leaves the value uniquely owned, so no copy is made.
    fn mutate_top<F>(&mut self, mutate: F) -> Result<(), PthError>
    where
        F: FnOnce(&mut Value, &mut u64) -> Result<(), PthError>,
    {
        let index = self.top_index()?;
        let memo_key = self.detach_memo(index);
        let slot = self.stack.get_mut(index).ok_or_else(|| PthError::Pickle {
            pos: self.op_pos,
            msg: "stack underflow".into(),
        })?;
        mutate(&mut slot.value, &mut self.clone_budget)?;
        if let Some(key) = memo_key {
            self.memo.insert(key, slot.value.clone());
        }
        Ok(())
    }

    fn detach_memo(&mut self, index: usize) -> Option<u32> {
        let slot = self.stack.get(index)?;
        let key = slot.memo_key?;
        let aliased = self.memo.get(&key)?.same_object(&slot.value);
        if aliased {
            self.memo.remove(&key);
        }
        aliased.then_some(key)
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PthError> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(limit("memo size", MAX_MEMO as u64));
        }
        let index = self.top_index()?;
        let slot = self.stack.get_mut(index).ok_or_else(|| PthError::Pickle {
            pos: self.op_pos,
            msg: "stack underflow".into(),
        })?;
        slot.memo_key = Some(key);
        self.memo.insert(key, slot.value.clone());
        Ok(())
    }

    fn memoize(&mut self) -> Result<(), PthError> {
        let key =
            u32::try_from(self.memo.len()).map_err(|_| limit("memo size", MAX_MEMO as u64))?;
        self.memo_put(key)
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PthError> {
        let value = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.malformed(&format!("memo key {key} was never stored")))?;
        self.push_slot(Slot {
            value,
            memo_key: Some(key),
        })
    }

    fn global(&mut self) -> Result<(), PthError> {
        let module = self.read_line()?;
        let name = self.read_line()?;
        self.push(Value::Global(resolve_global(&module, &name)?))
    }

    fn stack_global(&mut self) -> Result<(), PthError> {
        let name = self.pop()?;
        let module = self.pop()?;
        match (module.as_str(), name.as_str()) {
            (Some(module), Some(name)) => {
                let global = resolve_global(module, name)?;
                self.push(Value::Global(global))
            }
            _ => Err(self.malformed("STACK_GLOBAL needs two strings")),
        }
    }

    fn reduce(&mut self) -> Result<(), PthError> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let Value::Global(global) = callable else {
            return Err(
                self.malformed(&format!("REDUCE calls a {}, not a global", callable.kind()))
            );
        };
        let args = args
            .as_tuple()
            .ok_or_else(|| self.malformed("REDUCE arguments are not a tuple"))?;
        let result = match global {
            Global::OrderedDict if args.is_empty() => Ok(dict(Vec::new())),
            Global::RebuildTensor => rebuild_tensor(args),
            Global::RebuildParameter => match args.first() {
                Some(tensor @ Value::Tensor(_)) => Ok(tensor.clone()),
                _ => Err("_rebuild_parameter needs a tensor as its first argument".into()),
            },
            _ => Err(format!(
                "cannot call {global:?} with {} arguments",
                args.len()
            )),
        };
        let value = result.map_err(|msg| self.malformed(&msg))?;
        self.push(value)
    }

    /// `NEWOBJ` (`cls.__new__(cls, *args)`): only an empty `OrderedDict`.
    fn newobj(&mut self) -> Result<(), PthError> {
        let args = self.pop()?;
        let class = self.pop()?;
        let empty = args.as_tuple().is_some_and(<[Value]>::is_empty);
        match class {
            Value::Global(Global::OrderedDict) if empty => self.push(dict(Vec::new())),
            _ => Err(self.malformed("NEWOBJ is only accepted for an empty OrderedDict")),
        }
    }

    /// `BUILD` sets object state. The only state a checkpoint carries is a
    /// state_dict's `_metadata` (module versions) or tensor attributes, neither
    /// of which matters here, so it is dropped.
    fn build(&mut self) -> Result<(), PthError> {
        self.pop()?;
        let index = self.top_index()?;
        match self.stack.get(index).map(|slot| &slot.value) {
            Some(Value::Dict(_) | Value::Tensor(_)) => Ok(()),
            Some(other) => Err(self.malformed(&format!("BUILD on a {}", other.kind()))),
            None => Err(self.malformed("stack underflow")),
        }
    }

    fn binpersid(&mut self) -> Result<(), PthError> {
        let pid = self.pop()?;
        self.push_persistent_id(pid)
    }

    fn persid(&mut self) -> Result<(), PthError> {
        let line = self.read_line()?;
        self.push_persistent_id(Value::Str(line.into()))
    }

    fn push_persistent_id(&mut self, pid: Value) -> Result<(), PthError> {
        let depth = container_depth(std::iter::once(&pid))?;
        self.persistent_ids.push(pid.clone());
        self.push(Value::PersistentId(node(pid, depth)))
    }

    fn malformed(&self, msg: &str) -> PthError {
        PthError::Pickle {
            pos: self.op_pos,
            msg: msg.to_owned(),
        }
    }
}

fn node<T>(items: T, depth: usize) -> Rc<Node<T>> {
    Rc::new(Node { items, depth })
}

fn dict(items: Vec<(Value, Value)>) -> Value {
    Value::Dict(node(items, 1))
}

/// Depth of a container holding `items`, or an error past [`MAX_DEPTH`].
fn container_depth<'a>(items: impl Iterator<Item = &'a Value>) -> Result<usize, PthError> {
    let depth = items.map(Value::depth).max().unwrap_or(0) + 1;
    if depth > MAX_DEPTH {
        return Err(limit("nesting depth", MAX_DEPTH as u64));
    }
    Ok(depth)
}

/// `Rc::make_mut`, charging a copy (when the container is shared) to the
/// budget.
fn make_mut<'a, E: Clone>(
    rc: &'a mut Rc<Node<Vec<E>>>,
    budget: &mut u64,
) -> Result<&'a mut Node<Vec<E>>, PthError> {
    if Rc::strong_count(rc) > 1 {
        let cost = rc.items.len() as u64 + 1;
        *budget = budget
            .checked_sub(cost)
            .ok_or_else(|| limit("copy-on-write element count", MAX_CLONED))?;
    }
    Ok(Rc::make_mut(rc))
}

fn limit(what: &'static str, limit: u64) -> PthError {
    PthError::LimitExceeded { what, limit }
}

/// The allow-list: everything a state_dict pickle references.
fn resolve_global(module: &str, name: &str) -> Result<Global, PthError> {
    let global = match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch" | "torch.cuda", _) => DType::from_storage_name(name).map(Global::Storage),
        _ => None,
    };
    global.ok_or_else(|| PthError::UnsupportedGlobal {
        name: format!("{module}.{name}").escape_debug().to_string(),
    })
}

/// `_rebuild_tensor(storage, storage_offset, size, stride)` and
/// `_rebuild_tensor_v2(…, requires_grad, backward_hooks[, metadata])`.
fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format!(
            "tensor rebuild needs at least 4 arguments, got {}",
            args.len()
        ));
    };
    if args.len() > 7 {
        return Err(format!(
            "tensor rebuild takes at most 7 arguments, got {}",
            args.len()
        ));
    }
    let storage_offset = offset
        .as_int()
        .ok_or("tensor storage offset is not an int")?;
    let args = TensorArgs {
        storage: storage.clone(),
        storage_offset,
        shape: int_tuple(size).ok_or("tensor size is not a tuple of ints")?,
        strides: int_tuple(stride).ok_or("tensor stride is not a tuple of ints")?,
    };
    let depth = storage.depth() + 1;
    if depth > MAX_DEPTH {
        return Err(format!("nesting deeper than {MAX_DEPTH}"));
    }
    Ok(Value::Tensor(node(args, depth)))
}

fn int_tuple(value: &Value) -> Option<Vec<i64>> {
    value.as_tuple()?.iter().map(Value::as_int).collect()
}

/// The name of a standard opcode this reader refuses, for error messages.
fn unsupported_opcode_name(opcode: u8) -> Option<&'static str> {
    op::REFUSED
        .iter()
        .find(|(code, _)| *code == opcode)
        .map(|(_, name)| *name)
}
