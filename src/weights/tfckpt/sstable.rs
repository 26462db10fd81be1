//! The LevelDB table format (an SSTable) of a checkpoint's `.index`, and the masked crc32c that
//! LevelDB and TensorFlow store: data blocks of prefix-compressed keys with restart points, each
//! followed by a compression byte and a masked crc32c, an index block of block handles and a
//! 48-byte footer ending in a magic number.

const MASK_DELTA: u32 = 0xa282_ead8;

/// LevelDB/TensorFlow's masked crc32c (stored so that a crc of data holding crcs stays strong).
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

pub fn unmask_crc(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

pub(super) const FOOTER_LEN: usize = 48;
pub(super) const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
pub(super) const BLOCK_TRAILER: usize = 5;

/// Why a table could not be read (the caller adds the file name).
pub(super) type TableResult<T> = std::result::Result<T, String>;

pub(super) fn varint(buf: &[u8], pos: &mut usize) -> TableResult<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("varint runs past the end")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn fixed32(buf: &[u8], at: usize) -> TableResult<u32> {
    let b = buf.get(at..at + 4).ok_or("fixed32 past the end")?;
    Ok(u32::from_le_bytes(b.try_into().unwrap()))
}

/// A block's place in the file (`BlockHandle`: varint offset and size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct BlockHandle {
    pub(super) offset: u64,
    pub(super) size: u64,
}

impl BlockHandle {
    fn decode(buf: &[u8], pos: &mut usize) -> TableResult<BlockHandle> {
        Ok(BlockHandle {
            offset: varint(buf, pos)?,
            size: varint(buf, pos)?,
        })
    }
}

/// The metaindex and index handles of a table's 48-byte footer.
fn parse_footer(file: &[u8]) -> TableResult<(BlockHandle, BlockHandle)> {
    if file.len() < FOOTER_LEN {
        return Err(format!("{} bytes, shorter than a table footer", file.len()));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[40..].try_into().unwrap());
    if magic != TABLE_MAGIC {
        return Err(format!(
            "bad magic number {magic:#018x} at the end (truncated?)"
        ));
    }
    let mut pos = 0;
    let meta = BlockHandle::decode(footer, &mut pos)?;
    let index = BlockHandle::decode(footer, &mut pos)?;
    Ok((meta, index))
}

/// A block's contents: crc checked, decompressed when the block is snappy-compressed.
fn read_block(file: &[u8], h: BlockHandle) -> TableResult<Vec<u8>> {
    let start = h.offset as usize;
    let end = start
        .checked_add(h.size as usize)
        .and_then(|e| e.checked_add(BLOCK_TRAILER))
        .filter(|&e| e <= file.len() - FOOTER_LEN)
        .ok_or_else(|| {
            format!(
                "block at {}+{} runs past the end of the file",
                h.offset, h.size
            )
        })?;
    let data = &file[start..end - BLOCK_TRAILER];
    let kind = file[end - BLOCK_TRAILER];
    let want = unmask_crc(fixed32(file, end - 4)?);
    let got = crc32c::crc32c_append(crc32c::crc32c(data), &[kind]);
    if got != want {
        return Err(format!("block at {} fails its crc32c check", h.offset));
    }
    match kind {
        0 => Ok(data.to_vec()),
        1 => {
            // Snappy expands at most ~21×; a header claiming more is crafted.
            let n = snap::raw::decompress_len(data)
                .map_err(|e| format!("snappy block at {}: {e}", h.offset))?;
            if n > data.len().saturating_mul(32).saturating_add(1024) {
                return Err(format!(
                    "snappy block at {} claims {n} bytes from {}",
                    h.offset,
                    data.len()
                ));
            }
            snap::raw::Decoder::new()
                .decompress_vec(data)
                .map_err(|e| format!("snappy block at {}: {e}", h.offset))
        }
        k => Err(format!("block at {}: unknown compression {k}", h.offset)),
    }
}

/// The key/value pairs of one block, keys rebuilt from their shared prefixes.
pub(super) fn block_entries(block: &[u8]) -> TableResult<Vec<(Vec<u8>, Vec<u8>)>> {
    if block.len() < 4 {
        return Err("block shorter than its restart count".into());
    }
    let restarts = fixed32(block, block.len() - 4)? as usize;
    let limit = restarts
        .checked_add(1)
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| block.len().checked_sub(n))
        .ok_or("restart array larger than the block")?;
    let mut out = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut pos = 0;
    while pos < limit {
        let shared = varint(block, &mut pos)? as usize;
        let unshared = varint(block, &mut pos)? as usize;
        let vlen = varint(block, &mut pos)? as usize;
        if shared > key.len() {
            return Err(format!(
                "entry shares {shared} bytes with a {}-byte key",
                key.len()
            ));
        }
        let kend = pos.checked_add(unshared).filter(|&e| e <= limit);
        let vend = kend
            .and_then(|k| k.checked_add(vlen))
            .filter(|&e| e <= limit);
        let (Some(kend), Some(vend)) = (kend, vend) else {
            return Err("entry runs past its block".into());
        };
        key.truncate(shared);
        key.extend_from_slice(&block[pos..kend]);
        out.push((key.clone(), block[kend..vend].to_vec()));
        pos = vend;
    }
    Ok(out)
}

/// Every key/value pair of a table, in key order.
pub(super) fn table_entries(file: &[u8]) -> TableResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let (_meta, index) = parse_footer(file)?;
    let mut out = Vec::new();
    // Each data block is read once: an index naming a block twice (or overlapping blocks)
    // would otherwise grow memory with every mention.
    let mut seen: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for (_, handle) in block_entries(&read_block(file, index)?)? {
        let h = BlockHandle::decode(&handle, &mut 0)?;
        // [start, end) of the block with its trailer; the blocks read so far do not overlap,
        // so only the last one starting before `end` can overlap this one.
        let (start, end) = (
            h.offset,
            h.offset.saturating_add(h.size + BLOCK_TRAILER as u64),
        );
        if seen
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
        {
            return Err(format!(
                "the index names the block at {}+{} twice (or blocks that overlap)",
                h.offset, h.size
            ));
        }
        seen.insert(start, end);
        out.extend(block_entries(&read_block(file, h)?)?);
    }
    Ok(out)
}
