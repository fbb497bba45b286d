//! The native [`GroupsAccumulator`] behind `last_seen`, `latest` and `last_seen_struct`.
//!
//! All three keep, per group and per value column ("field"), the value of the
//! winning row and that row's order key. Values are never copied row by row:
//!
//! ```text
//!  update_batch ──► chunk k = the batch's value arrays + its encoded keys
//!                     │
//!  ptrs[group * m + field] = (chunk, row) of the current winner
//!                     │  (chunks whose rows no longer win are garbage)
//!  compaction ──► every live (chunk, row) gathered with `interleave`
//!  evaluate / state ──► `interleave` over the pointers, in group order
//! ```
//!
//! Input rows share one order key for all fields (it is compared once per row and
//! field against the stored winner); intermediate states carry one key per field,
//! since each field's winner may come from a different row.
//!
//! Chunk 0 is a sentinel row (all values NULL, key all NULL): a group that has seen
//! nothing points at it, which makes "no value yet" the lowest possible winner.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, StructArray, new_null_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::kernels::boolean::not;
use datafusion::arrow::compute::{SortOptions, interleave, nullif};
use datafusion::arrow::datatypes::{DataType, Fields};
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use crate::order::{Key, NULL_KEY, cmp_keys, decode_key, encode_keys, order_as_i64};
use crate::udaf::Modes;

/// Rows retained beyond the live ones before a compaction is considered.
const COMPACTION_SLACK_ROWS: usize = 64 * 1024;

/// How the value argument maps to fields.
#[derive(Debug, Clone)]
pub(crate) enum ValueShape {
    /// One value column, compared and returned whole (`last_seen`, `latest`).
    Single(DataType),
    /// A struct whose fields are tracked independently (`last_seen_struct`).
    Struct(Fields),
}

impl ValueShape {
    pub(crate) fn field_types(&self) -> Vec<DataType> {
        match self {
            ValueShape::Single(dt) => vec![dt.clone()],
            ValueShape::Struct(fields) => fields.iter().map(|f| f.data_type().clone()).collect(),
        }
    }

    /// Splits the value argument into one array per field. A NULL struct row
    /// makes every field NULL in that row.
    pub(crate) fn split(&self, value: &ArrayRef) -> Result<Vec<ArrayRef>> {
        match self {
            ValueShape::Single(_) => Ok(vec![value.clone()]),
            ValueShape::Struct(_) => {
                let Some(s) = value.as_struct_opt() else {
                    return internal_err!(
                        "last_seen_struct: expected a struct argument, got {}",
                        value.data_type()
                    );
                };
                let parent = s.nulls().filter(|n| n.null_count() > 0);
                s.columns()
                    .iter()
                    .map(|c| match parent {
                        None => Ok(c.clone()),
                        Some(p) => {
                            let mask = BooleanArray::new(p.inner().clone(), None);
                            Ok(nullif(c, &not(&mask)?)?)
                        }
                    })
                    .collect()
            }
        }
    }

    /// Assembles the per-field results into the function's output.
    pub(crate) fn assemble(&self, mut columns: Vec<ArrayRef>) -> Result<ArrayRef> {
        match self {
            ValueShape::Single(_) => match columns.pop() {
                Some(c) if columns.is_empty() => Ok(c),
                _ => internal_err!("last_seen: expected exactly one result column"),
            },
            ValueShape::Struct(fields) => Ok(Arc::new(StructArray::try_new(
                fields.clone(),
                columns,
                None,
            )?)),
        }
    }
}

/// One batch (or compacted set) of candidate rows.
struct Chunk {
    /// One array per field.
    values: Vec<ArrayRef>,
    /// Per-field validity, precomputed so the hot loop does no dynamic dispatch.
    valid: Vec<Option<NullBuffer>>,
    /// Row-major keys: stride `n` when all fields share the row's key,
    /// stride `m * n` when each field has its own (`per_field`).
    keys: Vec<Key>,
    per_field: bool,
}

impl Chunk {
    fn new(values: Vec<ArrayRef>, keys: Vec<Key>, per_field: bool) -> Self {
        let valid = values.iter().map(|v| v.logical_nulls()).collect();
        Chunk {
            values,
            valid,
            keys,
            per_field,
        }
    }

    #[inline]
    fn is_valid(&self, field: usize, row: usize) -> bool {
        self.valid[field].as_ref().is_none_or(|n| n.is_valid(row))
    }

    fn memory(&self) -> usize {
        self.values
            .iter()
            .map(|v| v.get_array_memory_size())
            .sum::<usize>()
            + self.keys.capacity() * size_of::<Key>()
    }
}

#[inline]
fn ptr(chunk: usize, row: usize) -> u64 {
    ((chunk as u64) << 32) | row as u64
}

#[inline]
fn unptr(p: u64) -> (usize, usize) {
    ((p >> 32) as usize, (p & 0xffff_ffff) as usize)
}

/// The grouped accumulator shared by all three functions.
pub(crate) struct LastSeenGroups {
    shape: ValueShape,
    /// Number of fields.
    m: usize,
    /// Number of order arguments.
    n: usize,
    /// `last_seen*` skip NULL values; `latest` does not.
    ignore_nulls: bool,
    /// The argument is a state struct (`last_seen_merge`).
    state_input: bool,
    /// The result is the state, as a struct of these fields.
    state_output: Option<Fields>,
    chunks: Vec<Chunk>,
    /// `ptrs[group * m + field]`: the winner of that field in that group.
    ptrs: Vec<u64>,
    /// `gmax[group * n..]`: an upper bound of every winner key of the group (the
    /// greatest key offered). A row above it wins every field it has a value for
    /// without a per-field comparison, the common case when rows land in order.
    gmax: Vec<Key>,
    retained_rows: usize,
    live_rows_after_compaction: usize,
    chunk_bytes: usize,
}

impl LastSeenGroups {
    pub(crate) fn new(modes: Modes) -> Self {
        let Modes {
            shape,
            n,
            ignore_nulls,
            state_input,
            state_output,
        } = modes;
        let m = shape.field_types().len();
        let mut acc = LastSeenGroups {
            shape,
            m,
            n,
            ignore_nulls,
            state_input,
            state_output,
            chunks: vec![],
            ptrs: vec![],
            gmax: vec![],
            retained_rows: 0,
            live_rows_after_compaction: 0,
            chunk_bytes: 0,
        };
        acc.reset();
        acc
    }

    fn reset(&mut self) {
        let values = self
            .shape
            .field_types()
            .iter()
            .map(|t| new_null_array(t, 1))
            .collect();
        let sentinel = Chunk::new(values, vec![NULL_KEY; self.n], false);
        self.chunk_bytes = sentinel.memory();
        self.chunks = vec![sentinel];
        self.ptrs = vec![];
        self.gmax = vec![];
        self.retained_rows = 0;
        self.live_rows_after_compaction = 0;
    }

    #[inline]
    fn key_of(&self, p: u64, field: usize) -> &[Key] {
        let (c, row) = unptr(p);
        let chunk = &self.chunks[c];
        let n = self.n;
        let start = if chunk.per_field {
            (row * self.m + field) * n
        } else {
            row * n
        };
        &chunk.keys[start..start + n]
    }

    /// Orders two candidates of one field on a full key tie: the greater value wins.
    fn cmp_values(&self, a: u64, b: u64, field: usize) -> Result<Ordering> {
        let ((ca, ra), (cb, rb)) = (unptr(a), unptr(b));
        let (va, vb) = (
            &self.chunks[ca].values[field],
            &self.chunks[cb].values[field],
        );
        let opts = SortOptions {
            descending: false,
            nulls_first: true,
        };
        let cmp = datafusion::arrow::array::make_comparator(va.as_ref(), vb.as_ref(), opts)?;
        Ok(cmp(ra, rb))
    }

    /// Adds one chunk of candidates and moves every winner pointer it beats.
    fn absorb(
        &mut self,
        values: Vec<ArrayRef>,
        keys: Vec<Key>,
        per_field: bool,
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if values.len() != self.m {
            return internal_err!(
                "last_seen: expected {} value columns, got {}",
                self.m,
                values.len()
            );
        }
        self.ptrs.resize(total_num_groups * self.m, 0);
        self.gmax.resize(total_num_groups * self.n, NULL_KEY);
        let rows = group_indices.len();
        let c = self.chunks.len();
        self.chunks.push(Chunk::new(values, keys, per_field));
        let (m, n) = (self.m, self.n);
        let mut won = false;
        for (row, &g) in group_indices.iter().enumerate() {
            if let Some(f) = opt_filter
                && !(f.is_valid(row) && f.value(row))
            {
                continue;
            }
            let cand = ptr(c, row);
            if !per_field {
                let key = &self.chunks[c].keys[row * n..(row + 1) * n];
                let bound = &mut self.gmax[g * n..(g + 1) * n];
                if cmp_keys(key, bound) == Ordering::Greater {
                    // Newer than anything the group has seen: every value it has wins.
                    bound.copy_from_slice(key);
                    let chunk = &self.chunks[c];
                    for (field, slot) in self.ptrs[g * m..(g + 1) * m].iter_mut().enumerate() {
                        if !self.ignore_nulls || chunk.is_valid(field, row) {
                            *slot = cand;
                            won = true;
                        }
                    }
                    continue;
                }
            }
            for field in 0..m {
                if self.ignore_nulls && !self.chunks[c].is_valid(field, row) {
                    continue;
                }
                let slot = g * m + field;
                let cur = self.ptrs[slot];
                let ord = match cmp_keys(self.key_of(cand, field), self.key_of(cur, field)) {
                    Ordering::Equal => self.cmp_values(cand, cur, field)?,
                    other => other,
                };
                if ord == Ordering::Greater {
                    self.ptrs[slot] = cand;
                    won = true;
                    if per_field {
                        let start = (row * m + field) * n;
                        let key = &self.chunks[c].keys[start..start + n];
                        let bound = &mut self.gmax[g * n..(g + 1) * n];
                        if cmp_keys(key, bound) == Ordering::Greater {
                            bound.copy_from_slice(key);
                        }
                    }
                }
            }
        }
        if won {
            self.retained_rows += rows;
            self.chunk_bytes += self.chunks[c].memory();
            self.maybe_compact()?;
        } else {
            self.chunks.pop();
        }
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<()> {
        let groups = self.ptrs.len() / self.m.max(1);
        let budget = COMPACTION_SLACK_ROWS + 2 * self.live_rows_after_compaction.max(groups);
        if self.retained_rows > budget {
            self.compact()?;
        }
        Ok(())
    }

    /// Rebuilds the chunks so that they hold only rows some group still points at.
    fn compact(&mut self) -> Result<()> {
        // New chunk 1 gathers rows with a shared key, chunk 2 rows with per-field keys.
        // `remap[chunk][row]` is the row's new pointer once it has been placed.
        let mut remap: Vec<Vec<u64>> = self
            .chunks
            .iter()
            .map(|ch| vec![0; ch.values.first().map_or(0, |v| v.len())])
            .collect();
        let mut sources: [Vec<(usize, usize)>; 2] = [vec![], vec![]];
        for p in self.ptrs.iter_mut() {
            if *p == 0 {
                continue;
            }
            let (c, row) = unptr(*p);
            let slot = &mut remap[c][row];
            if *slot == 0 {
                let layout = usize::from(self.chunks[c].per_field);
                sources[layout].push((c, row));
                *slot = ptr(1 + layout, sources[layout].len() - 1);
            }
            *p = *slot;
        }
        drop(remap);
        let n = self.n;
        let m = self.m;
        let mut fresh = Vec::with_capacity(3);
        for (layout, src) in sources.iter().enumerate() {
            let per_field = layout == 1;
            let stride = if per_field { m * n } else { n };
            let mut keys = Vec::with_capacity(src.len() * stride);
            for &(c, row) in src {
                keys.extend_from_slice(&self.chunks[c].keys[row * stride..(row + 1) * stride]);
            }
            let values = (0..m)
                .map(|f| {
                    let arrays: Vec<&dyn Array> =
                        self.chunks.iter().map(|ch| ch.values[f].as_ref()).collect();
                    Ok(interleave(&arrays, src)?)
                })
                .collect::<Result<Vec<_>>>()?;
            fresh.push(Chunk::new(values, keys, per_field));
        }
        let sentinel = self.chunks.swap_remove(0);
        self.chunks = std::iter::once(sentinel).chain(fresh).collect();
        self.retained_rows = sources[0].len() + sources[1].len();
        self.live_rows_after_compaction = self.retained_rows;
        self.chunk_bytes = self.chunks.iter().map(Chunk::memory).sum();
        Ok(())
    }

    /// Takes the pointers of the groups `emit_to` names, shifting the rest down.
    fn take_ptrs(&mut self, emit_to: EmitTo) -> Vec<u64> {
        match emit_to {
            EmitTo::All => {
                self.gmax.clear();
                std::mem::take(&mut self.ptrs)
            }
            EmitTo::First(groups) => {
                self.gmax.drain(..groups * self.n);
                let rest = self.ptrs.split_off(groups * self.m);
                std::mem::replace(&mut self.ptrs, rest)
            }
        }
    }

    /// Gathers the winning value of `field` for every group in `ptrs`.
    fn gather(&self, ptrs: &[u64], field: usize) -> Result<ArrayRef> {
        let arrays: Vec<&dyn Array> = self
            .chunks
            .iter()
            .map(|c| c.values[field].as_ref())
            .collect();
        let indices: Vec<(usize, usize)> = ptrs
            .iter()
            .skip(field)
            .step_by(self.m)
            .map(|&p| unptr(p))
            .collect();
        Ok(interleave(&arrays, &indices)?)
    }

    fn gather_keys(&self, ptrs: &[u64], field: usize, j: usize) -> ArrayRef {
        let keys: Int64Array = ptrs
            .iter()
            .skip(field)
            .step_by(self.m)
            .map(|&p| decode_key(self.key_of(p, field)[j]))
            .collect();
        Arc::new(keys)
    }

    fn finish_emit(&mut self, emit_to: EmitTo) -> Result<()> {
        match emit_to {
            EmitTo::All => self.reset(),
            EmitTo::First(_) => {
                // The emitted groups no longer pin their rows. Streaming (sorted or
                // spill-replay) aggregation emits after every batch and never calls
                // `EmitTo::All`, so without this the chunks of long-gone groups
                // would be kept (and reported by `size`) until the row slack of
                // `maybe_compact` is used up, far beyond a memory pool's share.
                if self.retained_rows > 2 * self.ptrs.len() {
                    self.compact()?;
                }
            }
        }
        Ok(())
    }

    fn encode_shared_keys(&self, order: &[ArrayRef], rows: usize) -> Result<Vec<Key>> {
        let order = order.iter().map(order_as_i64).collect::<Result<Vec<_>>>()?;
        let mut keys = Vec::with_capacity(rows * self.n);
        encode_keys(&order, rows, &mut keys);
        Ok(keys)
    }
}

impl GroupsAccumulator for LastSeenGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if self.state_input {
            let columns = state_columns(values)?;
            return self.merge_states(&columns, group_indices, opt_filter, total_num_groups);
        }
        let Some((value, order)) = values.split_first() else {
            return internal_err!("last_seen: no arguments");
        };
        let fields = self.shape.split(value)?;
        let keys = self.encode_shared_keys(order, group_indices.len())?;
        self.absorb(
            fields,
            keys,
            false,
            group_indices,
            opt_filter,
            total_num_groups,
        )
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.merge_states(values, group_indices, None, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        if let Some(fields) = self.state_output.clone() {
            let columns = self.state(emit_to)?;
            return Ok(Arc::new(StructArray::try_new(fields, columns, None)?));
        }
        let ptrs = self.take_ptrs(emit_to);
        let columns = (0..self.m)
            .map(|f| self.gather(&ptrs, f))
            .collect::<Result<Vec<_>>>()?;
        self.finish_emit(emit_to)?;
        self.shape.assemble(columns)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let ptrs = self.take_ptrs(emit_to);
        let mut out = (0..self.m)
            .map(|f| self.gather(&ptrs, f))
            .collect::<Result<Vec<_>>>()?;
        for f in 0..self.m {
            for j in 0..self.n {
                out.push(self.gather_keys(&ptrs, f, j));
            }
        }
        self.finish_emit(emit_to)?;
        Ok(out)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        if self.state_input {
            // The argument already is a state: its columns, filtered-out rows NULL.
            let mut columns = state_columns(values)?;
            if let Some(filter) = opt_filter {
                let drop = dropped(filter)?;
                for a in columns.iter_mut() {
                    *a = nullif(a, &drop)?;
                }
            }
            return Ok(columns);
        }
        let Some((value, order)) = values.split_first() else {
            return internal_err!("last_seen: no arguments");
        };
        let mut fields = self.shape.split(value)?;
        let mut keys = order
            .iter()
            .map(|o| Ok(Arc::new(order_as_i64(o)?) as ArrayRef))
            .collect::<Result<Vec<_>>>()?;
        if let Some(filter) = opt_filter {
            // A filtered-out row becomes the sentinel: NULL value, NULL key.
            let drop = dropped(filter)?;
            for a in fields.iter_mut().chain(keys.iter_mut()) {
                *a = nullif(a, &drop)?;
            }
        }
        let mut out = fields;
        for _ in 0..self.m {
            out.extend(keys.iter().cloned());
        }
        Ok(out)
    }

    fn size(&self) -> usize {
        self.chunk_bytes
            + self.ptrs.capacity() * size_of::<u64>()
            + self.gmax.capacity() * size_of::<Key>()
    }
}

/// The columns of a state-struct argument (`last_seen_merge`); a NULL state
/// row contributes nothing.
pub(crate) fn state_columns(values: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    let [state] = values else {
        return internal_err!("last_seen_merge: expected one state argument");
    };
    let Some(s) = state.as_struct_opt() else {
        return internal_err!(
            "last_seen_merge: expected a struct, got {}",
            state.data_type()
        );
    };
    match s.nulls().filter(|n| n.null_count() > 0) {
        None => Ok(s.columns().to_vec()),
        Some(p) => {
            let mask = BooleanArray::new(p.inner().clone(), None);
            let drop = not(&mask)?;
            s.columns().iter().map(|c| Ok(nullif(c, &drop)?)).collect()
        }
    }
}

/// The rows a filter leaves out (false or NULL), as a mask for `nullif`.
fn dropped(filter: &BooleanArray) -> Result<BooleanArray> {
    let drop = not(filter)?;
    Ok(match drop.nulls() {
        Some(_) => BooleanArray::from_iter(drop.iter().map(|b| Some(b.unwrap_or(true)))),
        None => drop,
    })
}

impl LastSeenGroups {
    /// Absorbs state rows: `m` value columns, then `m * n` key columns.
    fn merge_states(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let (m, n) = (self.m, self.n);
        if values.len() != m + m * n {
            return internal_err!(
                "last_seen: expected {} state columns, got {}",
                m + m * n,
                values.len()
            );
        }
        let rows = group_indices.len();
        let (fields, key_cols) = values.split_at(m);
        let key_cols = key_cols
            .iter()
            .map(order_as_i64)
            .collect::<Result<Vec<_>>>()?;
        // State keys are field-major ([field][order arg]); with per-field layout a
        // row's keys are contiguous per field, which is what encode_keys produces
        // when given all m*n columns in that order.
        let mut keys = Vec::with_capacity(rows * m * n);
        encode_keys(&key_cols, rows, &mut keys);
        self.absorb(
            fields.to_vec(),
            keys,
            m > 1,
            group_indices,
            opt_filter,
            total_num_groups,
        )
    }
}
