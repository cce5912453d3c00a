//! `multi` and `multiRead`: a list of ops, and the list of their results.
//!
//! Neither list has a count. Each element is preceded by a `MultiHeader` naming its type, and the
//! list ends with a header whose `done` flag is set (Zinc writes `-1, true, -1` there, as
//! ZooKeeper does). Request headers carry `err` -1; result headers carry 0, or the error code for
//! an error result. Decoding stops at the first `done` header whatever its other fields say.

use bytes::{Bytes, BytesMut};

use crate::codes::OpCode;
use crate::data::Stat;
use crate::jute::{DecodeError, DecodeResult, Reader, Record};
use crate::records::bodies::{
    CheckVersionRequest, Create2Response, CreateRequest, CreateResponse, CreateTtlRequest,
    DeleteRequest, ErrorResponse, GetChildrenRequest, GetChildrenResponse, GetDataRequest,
    GetDataResponse, MultiHeader, SetDataRequest, SetDataResponse,
};

/// The header that ends both lists.
const END_HEADER: MultiHeader = MultiHeader {
    op_type: -1,
    done: true,
    err: -1,
};

/// One op of a multi. Write ops and read ops may not be mixed in one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MultiOp {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    GetChildren(GetChildrenRequest),
    GetData(GetDataRequest),
}

/// The body of a `multi` (write ops only) or `multiRead` (read ops only) request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MultiRequest {
    pub ops: Vec<MultiOp>,
}

/// The outcome of one op of a multi.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpResult {
    /// From `create`: the created path.
    Create {
        path: String,
    },
    /// From `create2`, `createContainer` and `createTTL`.
    Create2 {
        path: String,
        stat: Stat,
    },
    SetData {
        stat: Stat,
    },
    Delete,
    Check,
    GetData {
        data: Option<Bytes>,
        stat: Stat,
    },
    GetChildren {
        children: Vec<String>,
    },
    /// The op failed (or, in a failed multi, was rolled back: Ok for ops before the failing one,
    /// `RuntimeInconsistency` after it).
    Error {
        err: i32,
    },
}

/// The body of a `multi` or `multiRead` reply: one result per op, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MultiResponse {
    pub results: Vec<OpResult>,
}

impl MultiOp {
    pub fn op(&self) -> OpCode {
        match self {
            MultiOp::Create(_) => OpCode::Create,
            MultiOp::Create2(_) => OpCode::Create2,
            MultiOp::CreateContainer(_) => OpCode::CreateContainer,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    /// Whether this op belongs in a `multiRead` rather than a `multi`.
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }

    /// The path the op acts on.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(body) | MultiOp::Create2(body) | MultiOp::CreateContainer(body) => {
                &body.path
            }
            MultiOp::CreateTtl(body) => &body.path,
            MultiOp::Delete(body) => &body.path,
            MultiOp::SetData(body) => &body.path,
            MultiOp::Check(body) => &body.path,
            MultiOp::GetChildren(body) => &body.path,
            MultiOp::GetData(body) => &body.path,
        }
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            MultiOp::Create(body) | MultiOp::Create2(body) | MultiOp::CreateContainer(body) => {
                body.encode(out)
            }
            MultiOp::CreateTtl(body) => body.encode(out),
            MultiOp::Delete(body) => body.encode(out),
            MultiOp::SetData(body) => body.encode(out),
            MultiOp::Check(body) => body.encode(out),
            MultiOp::GetChildren(body) => body.encode(out),
            MultiOp::GetData(body) => body.encode(out),
        }
    }

    fn decode_body(op_type: i32, reader: &mut Reader) -> DecodeResult<Self> {
        let op = OpCode::from_i32(op_type).ok_or(DecodeError::UnknownValue {
            what: "multi op type",
            value: op_type.into(),
        })?;
        Ok(match op {
            OpCode::Create => MultiOp::Create(CreateRequest::decode(reader)?),
            OpCode::Create2 => MultiOp::Create2(CreateRequest::decode(reader)?),
            OpCode::CreateContainer => MultiOp::CreateContainer(CreateRequest::decode(reader)?),
            OpCode::CreateTtl => MultiOp::CreateTtl(CreateTtlRequest::decode(reader)?),
            OpCode::Delete => MultiOp::Delete(DeleteRequest::decode(reader)?),
            OpCode::SetData => MultiOp::SetData(SetDataRequest::decode(reader)?),
            OpCode::Check => MultiOp::Check(CheckVersionRequest::decode(reader)?),
            OpCode::GetChildren => MultiOp::GetChildren(GetChildrenRequest::decode(reader)?),
            OpCode::GetData => MultiOp::GetData(GetDataRequest::decode(reader)?),
            _ => {
                return Err(DecodeError::UnknownValue {
                    what: "multi op type",
                    value: op_type.into(),
                })
            }
        })
    }
}

impl Record for MultiRequest {
    /// An empty multi is just the end header.
    const MIN_ENCODED_BYTES: usize = MultiHeader::MIN_ENCODED_BYTES;

    fn encode(&self, out: &mut BytesMut) {
        for op in &self.ops {
            MultiHeader {
                op_type: op.op().as_i32(),
                done: false,
                err: -1,
            }
            .encode(out);
            op.encode_body(out);
        }
        END_HEADER.encode(out);
    }

    /// Fails on an unknown op type and on a list that mixes read and write ops.
    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        let mut ops: Vec<MultiOp> = Vec::new();
        loop {
            let header = MultiHeader::decode(reader)?;
            if header.done {
                return Ok(MultiRequest { ops });
            }
            let op = MultiOp::decode_body(header.op_type, reader)?;
            if ops
                .first()
                .is_some_and(|first| first.is_read() != op.is_read())
            {
                return Err(DecodeError::Invalid("multi mixes read and write ops"));
            }
            ops.push(op);
        }
    }
}

impl OpResult {
    /// The op code its header carries (`Error` for an error result).
    pub fn op(&self) -> OpCode {
        match self {
            OpResult::Create { .. } => OpCode::Create,
            OpResult::Create2 { .. } => OpCode::Create2,
            OpResult::SetData { .. } => OpCode::SetData,
            OpResult::Delete => OpCode::Delete,
            OpResult::Check => OpCode::Check,
            OpResult::GetData { .. } => OpCode::GetData,
            OpResult::GetChildren { .. } => OpCode::GetChildren,
            OpResult::Error { .. } => OpCode::Error,
        }
    }

    fn encode_with_header(&self, out: &mut BytesMut) {
        let err = match self {
            OpResult::Error { err } => *err,
            _ => 0,
        };
        MultiHeader {
            op_type: self.op().as_i32(),
            done: false,
            err,
        }
        .encode(out);
        match self {
            OpResult::Create { path } => path.encode(out),
            OpResult::Create2 { path, stat } => {
                path.encode(out);
                stat.encode(out);
            }
            OpResult::SetData { stat } => stat.encode(out),
            OpResult::Delete | OpResult::Check => {}
            OpResult::GetData { data, stat } => {
                data.encode(out);
                stat.encode(out);
            }
            OpResult::GetChildren { children } => children.encode(out),
            OpResult::Error { err } => err.encode(out),
        }
    }

    fn decode_body(op_type: i32, reader: &mut Reader) -> DecodeResult<Self> {
        let unknown = DecodeError::UnknownValue {
            what: "multi result type",
            value: op_type.into(),
        };
        Ok(match OpCode::from_i32(op_type).ok_or(unknown.clone())? {
            OpCode::Create => OpResult::Create {
                path: CreateResponse::decode(reader)?.path,
            },
            OpCode::Create2 => {
                let body = Create2Response::decode(reader)?;
                OpResult::Create2 {
                    path: body.path,
                    stat: body.stat,
                }
            }
            OpCode::SetData => OpResult::SetData {
                stat: SetDataResponse::decode(reader)?.stat,
            },
            OpCode::Delete => OpResult::Delete,
            OpCode::Check => OpResult::Check,
            OpCode::GetData => {
                let body = GetDataResponse::decode(reader)?;
                OpResult::GetData {
                    data: body.data,
                    stat: body.stat,
                }
            }
            OpCode::GetChildren => OpResult::GetChildren {
                children: GetChildrenResponse::decode(reader)?.children,
            },
            OpCode::Error => OpResult::Error {
                err: ErrorResponse::decode(reader)?.err,
            },
            _ => return Err(unknown),
        })
    }
}

impl Record for MultiResponse {
    const MIN_ENCODED_BYTES: usize = MultiHeader::MIN_ENCODED_BYTES;

    fn encode(&self, out: &mut BytesMut) {
        for result in &self.results {
            result.encode_with_header(out);
        }
        END_HEADER.encode(out);
    }

    fn decode(reader: &mut Reader) -> DecodeResult<Self> {
        let mut results = Vec::new();
        loop {
            let header = MultiHeader::decode(reader)?;
            if header.done {
                return Ok(MultiResponse { results });
            }
            results.push(OpResult::decode_body(header.op_type, reader)?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_multi_is_the_end_header() {
        let bytes = MultiRequest::default().to_bytes();
        assert_eq!(
            &bytes[..],
            &[0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(MultiResponse::default().to_bytes(), bytes);
    }

    #[test]
    fn request_headers_carry_err_minus_one() {
        let multi = MultiRequest {
            ops: vec![MultiOp::Delete(DeleteRequest {
                path: "/a".into(),
                version: -1,
            })],
        };
        let bytes = multi.to_bytes();
        assert_eq!(&bytes[..9], &[0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(MultiRequest::from_bytes(&bytes), Ok(multi));
    }

    #[test]
    fn error_results_repeat_the_code_in_the_header() {
        let response = MultiResponse {
            results: vec![OpResult::Error { err: -101 }, OpResult::Check],
        };
        let bytes = response.to_bytes();
        let mut reader = Reader::new(bytes.clone());
        let header = MultiHeader::decode(&mut reader).expect("header");
        assert_eq!(
            header,
            MultiHeader {
                op_type: -1,
                done: false,
                err: -101
            }
        );
        assert_eq!(MultiResponse::from_bytes(&bytes), Ok(response));
    }

    #[test]
    fn mixed_read_and_write_ops_are_rejected() {
        let mixed = MultiRequest {
            ops: vec![
                MultiOp::GetData(GetDataRequest {
                    path: "/a".into(),
                    watch: false,
                }),
                MultiOp::Delete(DeleteRequest {
                    path: "/a".into(),
                    version: -1,
                }),
            ],
        };
        assert!(matches!(
            MultiRequest::from_bytes(&mixed.to_bytes()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn unterminated_list_is_truncated() {
        let bytes = MultiRequest::default().to_bytes();
        assert!(matches!(
            MultiRequest::from_bytes(&bytes[..8]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
