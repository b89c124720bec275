//! Module values (MODULE_2) and MODULE_AUX records, skipped generically: the value is a
//! stream of tagged items ending with an EOF tag, so it can be walked without the module
//! and kept as an opaque payload, as `rdb.c`, `rdbLoadCheckModuleValue` walks it.

use super::constants::*;
use super::cursor::Cursor;
use super::error::{Error, Result};
use super::string::{read_len, skip_str};
use super::types::ModuleValue;

const MODULE_CHARSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The 9-character type name and the encoding version packed in a module type id.
pub fn module_name(id: u64) -> (String, u64) {
    let name = (0..9).map(|j| MODULE_CHARSET[((id >> (64 - 6 * (j + 1))) & 63) as usize] as char).collect();
    (name, id & 1023)
}

/// Walks tagged module items up to and including the EOF tag.
pub fn skip_items(cur: &mut Cursor<'_>) -> Result<()> {
    loop {
        let at = cur.offset();
        match read_len(cur, "a module item tag")? {
            RDB_MODULE_OPCODE_EOF => return Ok(()),
            RDB_MODULE_OPCODE_SINT | RDB_MODULE_OPCODE_UINT => {
                read_len(cur, "a module integer")?;
            }
            RDB_MODULE_OPCODE_FLOAT => cur.skip(4, "a module float")?,
            RDB_MODULE_OPCODE_DOUBLE => cur.skip(8, "a module double")?,
            RDB_MODULE_OPCODE_STRING => skip_str(cur)?,
            op => return Err(Error::corrupt(at, format!("module item tag {op}, expected 0-5"))),
        }
    }
}

pub fn read_module_value<'a>(cur: &mut Cursor<'a>) -> Result<ModuleValue<'a>> {
    let data = cur.data();
    let start = cur.pos();
    let id = read_len(cur, "a module type id")?;
    let (name, encver) = module_name(id);
    skip_items(cur)?;
    Ok(ModuleValue { name, encver, raw: &data[start..cur.pos()] })
}

#[cfg(test)]
mod tests {
    #[test]
    fn module_names() {
        // "MBbloom--" at encver 0: each char's index in the charset, 6 bits each, high first.
        let charset = super::MODULE_CHARSET;
        let mut id: u64 = 0;
        for c in b"MBbloom--" {
            id = (id << 6) | charset.iter().position(|x| x == c).unwrap() as u64;
        }
        id = (id << 10) | 3;
        assert_eq!(super::module_name(id), ("MBbloom--".to_string(), 3));
    }
}
