//! Loading and validation. (Being written: see issue 2.)
use super::*;
pub(super) fn load(
    _path: &Path,
    _opts: LoadOptions,
) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    todo!()
}
