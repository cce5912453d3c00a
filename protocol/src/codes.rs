//! The integer codes of the protocol: operation codes (`ZooDefs.OpCode`) and error codes
//! (`KeeperException.Code`).

/// Declares a fieldless enum carried on the wire as an `i32`, with checked conversion.
#[macro_export]
macro_rules! int_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(i32)]
        pub enum $name { $( $(#[$vmeta])* $variant = $value, )* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            pub fn from_i32(value: i32) -> Option<Self> {
                match value {
                    $( v if v == $value => Some($name::$variant), )*
                    _ => None,
                }
            }

            pub fn as_i32(self) -> i32 {
                self as i32
            }
        }

        impl TryFrom<i32> for $name {
            type Error = $crate::jute::DecodeError;
            fn try_from(value: i32) -> Result<Self, $crate::jute::DecodeError> {
                $name::from_i32(value).ok_or($crate::jute::DecodeError::UnknownValue {
                    what: stringify!($name),
                    value: value as i64,
                })
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                value as i32
            }
        }

        /// On the wire as a jute `int`; an unknown value is a decode error.
        impl $crate::jute::Record for $name {
            const MIN_ENCODED_BYTES: usize = 4;
            fn encode(&self, out: &mut ::bytes::BytesMut) {
                ::bytes::BufMut::put_i32(out, *self as i32);
            }
            fn decode(reader: &mut $crate::jute::Reader) -> $crate::jute::DecodeResult<Self> {
                $name::try_from(reader.read_i32()?)
            }
        }
    };
}

int_enum! {
    /// Request types (`ZooDefs.OpCode`).
    pub enum OpCode {
        Notification = 0,
        Create = 1,
        Delete = 2,
        Exists = 3,
        GetData = 4,
        SetData = 5,
        GetAcl = 6,
        SetAcl = 7,
        GetChildren = 8,
        Sync = 9,
        Ping = 11,
        GetChildren2 = 12,
        Check = 13,
        Multi = 14,
        Create2 = 15,
        Reconfig = 16,
        CheckWatches = 17,
        RemoveWatches = 18,
        CreateContainer = 19,
        DeleteContainer = 20,
        CreateTtl = 21,
        MultiRead = 22,
        Auth = 100,
        SetWatches = 101,
        Sasl = 102,
        GetEphemerals = 103,
        GetAllChildrenNumber = 104,
        SetWatches2 = 105,
        AddWatch = 106,
        WhoAmI = 107,
        CreateSession = -10,
        CloseSession = -11,
        Error = -1,
    }
}

int_enum! {
    /// Error codes carried in `ReplyHeader::err` and multi results (`KeeperException.Code`).
    pub enum ErrorCode {
        Ok = 0,
        SystemError = -1,
        RuntimeInconsistency = -2,
        DataInconsistency = -3,
        ConnectionLoss = -4,
        MarshallingError = -5,
        Unimplemented = -6,
        OperationTimeout = -7,
        BadArguments = -8,
        UnknownSession = -12,
        NewConfigNoQuorum = -13,
        ReconfigInProgress = -14,
        ApiError = -100,
        NoNode = -101,
        NoAuth = -102,
        BadVersion = -103,
        NoChildrenForEphemerals = -108,
        NodeExists = -110,
        NotEmpty = -111,
        SessionExpired = -112,
        InvalidCallback = -113,
        InvalidAcl = -114,
        AuthFailed = -115,
        SessionMoved = -118,
        NotReadOnly = -119,
        EphemeralOnLocalSession = -120,
        NoWatcher = -121,
        RequestTimeout = -122,
        ReconfigDisabled = -123,
        SessionClosedRequireSaslAuth = -124,
        QuotaExceeded = -125,
        ThrottledOp = -127,
    }
}

impl OpCode {
    /// Whether the operation changes state (goes through the Zab pipeline as a txn).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            OpCode::Create
                | OpCode::Create2
                | OpCode::CreateContainer
                | OpCode::CreateTtl
                | OpCode::Delete
                | OpCode::DeleteContainer
                | OpCode::SetData
                | OpCode::SetAcl
                | OpCode::Check
                | OpCode::Multi
                | OpCode::Reconfig
                | OpCode::CreateSession
                | OpCode::CloseSession
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({})", self, self.as_i32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_i32(code.as_i32()), Some(code));
        }
        for &op in OpCode::ALL {
            assert_eq!(OpCode::try_from(op.as_i32()), Ok(op));
        }
        assert_eq!(ErrorCode::NoNode.as_i32(), -101);
        assert_eq!(OpCode::WhoAmI.as_i32(), 107);
        assert!(OpCode::from_i32(10).is_none());
    }
}
