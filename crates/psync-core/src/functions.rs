//! Scalar functions the views need: `sha1_hex(text)`, the external id hash
//! Segment computes (lower-case hex SHA-1).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `sha1_hex(text) -> text`: lower-case hex SHA-1 of the UTF-8 bytes; NULL stays NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Sha1Hex {
    signature: Signature,
}

impl ScalarUDFImpl for Sha1Hex {
    fn name(&self) -> &str {
        "sha1_hex"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = as_string_array(&arrays[0])?;
        let out: StringArray = input
            .iter()
            .map(|v| v.map(|s| sha1_smol::Sha1::from(s).hexdigest()))
            .collect();
        let out: ArrayRef = Arc::new(out);
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
            && out.len() == 1
        {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&out, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// The `sha1_hex` function.
pub fn sha1_hex() -> Arc<ScalarUDF> {
    static UDF: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
        Arc::new(ScalarUDF::new_from_impl(Sha1Hex {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }))
    });
    Arc::clone(&UDF)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        // printf 'emailjane.kim@segment.com' | sha1sum
        assert_eq!(
            sha1_smol::Sha1::from("emailjane.kim@segment.com").hexdigest(),
            "bc269125e7a325f844980b80d7084928bbcaf304"
        );
    }
}
