//! The version a Windows executable states: the `VS_FIXEDFILEINFO` of its `RT_VERSION`
//! resource, read from the PE headers, the section table and the resource directory. Pure and
//! bounds-checked: any file gives an answer or `None`, never a panic.

use crate::model::Build;

const RT_VERSION: u32 = 16;
const FIXED_FILE_INFO_SIGNATURE: u32 = 0xFEEF_04BD;
const RESOURCE_DIRECTORY: usize = 2;
/// How deep resource directories may nest (type, name, language).
const RESOURCE_LEVELS: usize = 3;

/// The file version in the executable's version resource (`FileVersion` of
/// `VS_FIXEDFILEINFO`), or `None` when `bytes` is not a PE file or has no version resource.
pub fn pe_file_version(bytes: &[u8]) -> Option<Build> {
    let pe = Pe::parse(bytes)?;
    let (rva, size) = pe.version_resource()?;
    let data = pe.at_rva(rva, size)?;
    fixed_file_info(data)
}

struct Pe<'b> {
    bytes: &'b [u8],
    /// (virtual address, virtual size, raw offset, raw size) per section.
    sections: Vec<(u32, u32, u32, u32)>,
    resources: Option<(u32, u32)>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl<'b> Pe<'b> {
    fn parse(bytes: &'b [u8]) -> Option<Self> {
        if bytes.get(..2)? != b"MZ" {
            return None;
        }
        let pe = u32_at(bytes, 0x3c)? as usize;
        if bytes.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
            return None;
        }
        let coff = pe + 4;
        let sections = u16_at(bytes, coff + 2)? as usize;
        let optional_size = u16_at(bytes, coff + 16)? as usize;
        let optional = coff + 20;
        let (directories, count) = match u16_at(bytes, optional)? {
            0x10b => (optional + 96, u32_at(bytes, optional + 92)?),
            0x20b => (optional + 112, u32_at(bytes, optional + 108)?),
            _ => return None,
        };
        let resources = (count as usize > RESOURCE_DIRECTORY)
            .then(|| {
                let at = directories + RESOURCE_DIRECTORY * 8;
                Some((u32_at(bytes, at)?, u32_at(bytes, at + 4)?))
            })
            .flatten()
            .filter(|&(rva, _)| rva != 0);
        let table = optional.checked_add(optional_size)?;
        let sections = (0..sections.min(96))
            .map(|i| {
                let s = table + i * 40;
                Some((
                    u32_at(bytes, s + 12)?,
                    u32_at(bytes, s + 8)?,
                    u32_at(bytes, s + 20)?,
                    u32_at(bytes, s + 16)?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Pe {
            bytes,
            sections,
            resources,
        })
    }

    /// `len` bytes at a relative virtual address, from the section that holds them.
    fn at_rva(&self, rva: u32, len: u32) -> Option<&'b [u8]> {
        let &(va, _, raw, rsize) = self
            .sections
            .iter()
            .find(|&&(va, vsize, _, rsize)| rva >= va && rva - va < vsize.max(rsize))?;
        let offset = rva - va;
        let end = offset.checked_add(len)?;
        if end > rsize {
            return None;
        }
        let start = (raw as usize).checked_add(offset as usize)?;
        self.bytes.get(start..start.checked_add(len as usize)?)
    }

    /// The data entry (RVA, size) of the first `RT_VERSION` resource.
    fn version_resource(&self) -> Option<(u32, u32)> {
        let (root_rva, root_size) = self.resources?;
        let root = self.at_rva(root_rva, root_size)?;
        let mut dir = 0usize;
        for level in 0..RESOURCE_LEVELS {
            let named = u16_at(root, dir + 12)? as usize;
            let ids = u16_at(root, dir + 14)? as usize;
            let entries = (0..named + ids).map(|i| dir + 16 + i * 8);
            let entry = if level == 0 {
                entries
                    .clone()
                    .find(|&e| u32_at(root, e) == Some(RT_VERSION))?
            } else {
                entries.clone().next()?
            };
            let target = u32_at(root, entry + 4)?;
            if target & 0x8000_0000 != 0 {
                dir = (target & 0x7fff_ffff) as usize;
                continue;
            }
            let data = target as usize;
            return Some((u32_at(root, data)?, u32_at(root, data + 4)?));
        }
        None
    }
}

/// `VS_VERSIONINFO`: a header, the key `VS_VERSION_INFO` in UTF-16 with its terminator, padding
/// to 32 bits, then `VS_FIXEDFILEINFO`.
fn fixed_file_info(data: &[u8]) -> Option<Build> {
    let key: Vec<u8> = "VS_VERSION_INFO\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    if data.get(6..6 + key.len())? != key.as_slice() {
        return None;
    }
    let fixed = (6 + key.len()).next_multiple_of(4);
    if u32_at(data, fixed)? != FIXED_FILE_INFO_SIGNATURE {
        return None;
    }
    let ms = u32_at(data, fixed + 8)?;
    let ls = u32_at(data, fixed + 12)?;
    Some(Build([ms >> 16, ms & 0xffff, ls >> 16, ls & 0xffff]))
}

/// A minimal PE32+ file with one `.rsrc` section holding a version resource of `build`: what
/// the tests (and `package new`'s tests) read.
#[doc(hidden)]
pub fn sample_pe(build: Build) -> Vec<u8> {
    let [a, b, c, d] = build.0;
    let section_rva: u32 = 0x1000;
    let raw: u32 = 0x200;

    // Resource tree: root (type 16) -> name (id 1) -> language (1033) -> data entry.
    let mut rsrc = Vec::new();
    let dir = |rsrc: &mut Vec<u8>, id: u32, target: u32| {
        rsrc.extend_from_slice(&[0; 12]);
        rsrc.extend_from_slice(&0u16.to_le_bytes());
        rsrc.extend_from_slice(&1u16.to_le_bytes());
        rsrc.extend_from_slice(&id.to_le_bytes());
        rsrc.extend_from_slice(&target.to_le_bytes());
    };
    dir(&mut rsrc, RT_VERSION, 0x8000_0000 | 24);
    dir(&mut rsrc, 1, 0x8000_0000 | 48);
    dir(&mut rsrc, 1033, 72);
    let info_at = 88u32;
    let mut info = Vec::new();
    let key: Vec<u8> = "VS_VERSION_INFO\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    info.extend_from_slice(&[0; 6]);
    info.extend_from_slice(&key);
    while info.len() % 4 != 0 {
        info.push(0);
    }
    for v in [
        FIXED_FILE_INFO_SIGNATURE,
        0x0001_0000,
        (a << 16) | b,
        (c << 16) | d,
        (a << 16) | b,
        (c << 16) | d,
    ] {
        info.extend_from_slice(&v.to_le_bytes());
    }
    info.extend_from_slice(&[0; 28]);
    let len = info.len() as u16;
    info[0..2].copy_from_slice(&len.to_le_bytes());
    info[2..4].copy_from_slice(&52u16.to_le_bytes());
    // Data entry at 72: RVA, size, code page, reserved.
    rsrc.extend_from_slice(&(section_rva + info_at).to_le_bytes());
    rsrc.extend_from_slice(&u32::from(len).to_le_bytes());
    rsrc.extend_from_slice(&[0; 8]);
    rsrc.extend_from_slice(&info);
    let rsrc_len = u32::try_from(rsrc.len()).expect("small");

    let mut f = vec![0u8; raw as usize];
    f[0..2].copy_from_slice(b"MZ");
    f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    f[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    f[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    f[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
    f[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
    let opt = coff + 20;
    f[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    f[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
    let res_dir = opt + 112 + RESOURCE_DIRECTORY * 8;
    f[res_dir..res_dir + 4].copy_from_slice(&section_rva.to_le_bytes());
    f[res_dir + 4..res_dir + 8].copy_from_slice(&rsrc_len.to_le_bytes());
    let sec = opt + 240;
    f[sec..sec + 5].copy_from_slice(b".rsrc");
    f[sec + 8..sec + 12].copy_from_slice(&rsrc_len.to_le_bytes());
    f[sec + 12..sec + 16].copy_from_slice(&section_rva.to_le_bytes());
    f[sec + 16..sec + 20].copy_from_slice(&rsrc_len.to_le_bytes());
    f[sec + 20..sec + 24].copy_from_slice(&raw.to_le_bytes());
    f.extend_from_slice(&rsrc);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_resource_of_a_pe_file_is_read() {
        let build = Build([7, 0, 2046, 553]);
        let pe = sample_pe(build);
        assert_eq!(pe_file_version(&pe), Some(build));
    }

    #[test]
    fn anything_else_gives_none_without_panicking() {
        let pe = sample_pe(Build([6, 0, 9319, 881]));
        assert_eq!(pe_file_version(b""), None);
        assert_eq!(pe_file_version(b"sfbpatch lab installer"), None);
        for end in 0..pe.len() {
            let _ = pe_file_version(&pe[..end]);
        }
        let mut bad = pe.clone();
        for i in (0..bad.len()).step_by(7) {
            bad[i] ^= 0xff;
            let _ = pe_file_version(&bad);
        }
        // Without its version resource signature the file states no version.
        let at = pe
            .windows(4)
            .position(|w| w == FIXED_FILE_INFO_SIGNATURE.to_le_bytes())
            .unwrap();
        let mut unsigned = pe;
        unsigned[at] = 0;
        assert_eq!(pe_file_version(&unsigned), None);
    }
}
