//! MQTT 3.1.1 and 5 packets as chatload's client writes and reads them. The packets of every
//! message (PUBLISH, PUBACK, and the QoS 2 replies a broker may still ask for) are written
//! and read here, in place and without allocating; the once-per-connection ones (CONNECT,
//! CONNACK, SUBSCRIBE, SUBACK, a broker's DISCONNECT) go through rumqttc's codec
//! (`mqttbytes`), which checks them fully. Owns the bytes; not the session's state
//! (`mqtt_session`).

use bytes::BytesMut;
use rumqttc::mqttbytes::{QoS as QoS4, v4};
use rumqttc::v5::mqttbytes::{QoS as QoS5, v5};
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// A packet from the broker, as far as chatload's client cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    ConnAck {
        /// Why the broker refused the connection, in its own terms.
        refused: Option<String>,
        /// MQTT 5: how many QoS 1 publishes the broker takes unacknowledged.
        receive_max: Option<u16>,
        /// MQTT 5: the keep-alive the broker wants instead of the client's (seconds).
        server_keep_alive: Option<u16>,
    },
    SubAck {
        pkid: u16,
        refused: bool,
    },
    Publish {
        qos: u8,
        pkid: u16,
        /// Where the payload lies in the packet.
        payload: Range<usize>,
    },
    PubAck {
        pkid: u16,
        /// MQTT 5: the reason the broker refused the publish.
        refused: Option<String>,
    },
    PubRel {
        pkid: u16,
    },
    PingResp,
    Disconnect {
        reason: String,
    },
    /// Nothing a client of chatload's kind acts on (PUBREC and PUBCOMP for publishes it never
    /// makes, UNSUBACK, AUTH).
    Other,
}

/// The remaining-length field at the start of `buf` (after the first byte): its value and
/// its own length; `None` while incomplete.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let mut value = 0usize;
    for (i, b) in buf.iter().skip(1).take(4).enumerate() {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 5 {
        return Err("a packet whose length field runs past four bytes".into());
    }
    Ok(None)
}

/// The length of the whole packet at the start of `buf`, or `None` while it is incomplete;
/// a packet longer than `max` is an error, so no buffer grows past it.
pub fn packet_len(buf: &[u8], max: usize) -> Result<Option<usize>, String> {
    let Some((remaining, field)) = remaining_length(buf)? else {
        return Ok(None);
    };
    let total = 1 + field + remaining;
    if total > max {
        return Err(format!(
            "the broker sent a packet of {total} bytes; chatload reads packets of at most {max} bytes, so it gave the connection up"
        ));
    }
    Ok((buf.len() >= total).then_some(total))
}

fn u16_at(body: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
}

/// The length of an MQTT 5 property block at `at` (its own length field included).
fn properties_len(body: &[u8], at: usize) -> Option<usize> {
    let mut value = 0usize;
    for i in 0..4 {
        let b = *body.get(at + i)?;
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(i + 1 + value);
        }
    }
    None
}

/// What one whole packet (as [`packet_len`] measured it) says.
pub fn decode(version: Version, packet: &[u8]) -> Result<Seen, String> {
    let kind = packet[0] >> 4;
    let Some((_, field)) = remaining_length(packet)? else {
        return Err("a packet cut short".into());
    };
    let body = &packet[1 + field..];
    let malformed = |what: &str| format!("a malformed {what} packet");
    match kind {
        3 => {
            let qos = (packet[0] >> 1) & 3;
            let topic = usize::from(u16_at(body, 0).ok_or_else(|| malformed("PUBLISH"))?);
            let mut at = 2 + topic;
            let pkid = if qos > 0 {
                let id = u16_at(body, at).ok_or_else(|| malformed("PUBLISH"))?;
                at += 2;
                id
            } else {
                0
            };
            if version == Version::V5 {
                at += properties_len(body, at).ok_or_else(|| malformed("PUBLISH"))?;
            }
            if at > body.len() {
                return Err(malformed("PUBLISH"));
            }
            if qos > 2 {
                return Err(malformed("PUBLISH (QoS 3)"));
            }
            let start = 1 + field + at;
            Ok(Seen::Publish {
                qos,
                pkid,
                payload: start..packet.len(),
            })
        }
        4 => {
            let pkid = u16_at(body, 0).ok_or_else(|| malformed("PUBACK"))?;
            // MQTT 5 leaves the reason out when it is success.
            let reason = match version {
                Version::V5 => body.get(2).copied().unwrap_or(0),
                Version::V311 => 0,
            };
            let refused = (reason >= 0x80).then(|| reason_name(reason));
            Ok(Seen::PubAck { pkid, refused })
        }
        6 => Ok(Seen::PubRel {
            pkid: u16_at(body, 0).ok_or_else(|| malformed("PUBREL"))?,
        }),
        13 => Ok(Seen::PingResp),
        2 | 9 | 14 => decode_rare(version, packet),
        5 | 7 | 11 | 15 => Ok(Seen::Other),
        _ => Err(format!(
            "a packet of type {kind}, which a broker does not send"
        )),
    }
}

/// CONNACK, SUBACK and DISCONNECT, through rumqttc's codec.
fn decode_rare(version: Version, packet: &[u8]) -> Result<Seen, String> {
    let mut bytes = BytesMut::from(packet);
    match version {
        Version::V311 => match v4::Packet::read(&mut bytes, packet.len()) {
            Ok(v4::Packet::ConnAck(a)) => Ok(Seen::ConnAck {
                refused: (a.code != v4::ConnectReturnCode::Success)
                    .then(|| format!("{:?} (MQTT 3.1.1 return code {})", a.code, a.code as u8)),
                receive_max: None,
                server_keep_alive: None,
            }),
            Ok(v4::Packet::SubAck(s)) => Ok(Seen::SubAck {
                pkid: s.pkid,
                refused: s
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, v4::SubscribeReasonCode::Failure)),
            }),
            Ok(v4::Packet::Disconnect) => Ok(Seen::Disconnect {
                reason: "DISCONNECT".into(),
            }),
            Ok(_) => Ok(Seen::Other),
            Err(e) => Err(format!(
                "a packet rumqttc's MQTT 3.1.1 codec cannot read ({e:?})"
            )),
        },
        Version::V5 => match v5::Packet::read(&mut bytes, Some(packet.len() as u32)) {
            Ok(v5::Packet::ConnAck(a)) => {
                let (receive_max, server_keep_alive, reason) = match &a.properties {
                    Some(p) => (p.receive_max, p.server_keep_alive, p.reason_string.clone()),
                    None => (None, None, None),
                };
                Ok(Seen::ConnAck {
                    refused: (a.code != v5::ConnectReturnCode::Success).then(|| match reason {
                        Some(r) => format!("{:?}: {}", a.code, crate::secrets::excerpt(&r, 120)),
                        None => format!("{:?}", a.code),
                    }),
                    receive_max,
                    server_keep_alive,
                })
            }
            Ok(v5::Packet::SubAck(s)) => Ok(Seen::SubAck {
                pkid: s.pkid,
                refused: s
                    .return_codes
                    .iter()
                    .any(|c| !matches!(c, v5::SubscribeReasonCode::Success(_))),
            }),
            Ok(v5::Packet::Disconnect(d)) => Ok(Seen::Disconnect {
                reason: format!("DISCONNECT ({:?})", d.reason_code),
            }),
            Ok(_) => Ok(Seen::Other),
            Err(e) => Err(format!(
                "a packet rumqttc's MQTT 5 codec cannot read ({e:?})"
            )),
        },
    }
}

/// An MQTT 5 reason code's name (section 2.4), for a refusal.
fn reason_name(code: u8) -> String {
    let name = match code {
        0x80 => "UnspecifiedError",
        0x83 => "ImplementationSpecificError",
        0x87 => "NotAuthorized",
        0x90 => "TopicNameInvalid",
        0x91 => "PacketIdentifierInUse",
        0x97 => "QuotaExceeded",
        0x99 => "PayloadFormatInvalid",
        _ => return format!("reason code 0x{code:02x}"),
    };
    name.to_string()
}

/// Appends a remaining-length field.
fn put_length(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends a PUBLISH (QoS 0 or 1; `pkid` is written for QoS 1 only).
pub fn put_publish(
    out: &mut Vec<u8>,
    version: Version,
    topic: &str,
    qos: u8,
    pkid: u16,
    payload: &[u8],
) {
    let id = if qos > 0 { 2 } else { 0 };
    let properties = usize::from(version == Version::V5);
    out.push(0x30 | (qos << 1));
    put_length(out, 2 + topic.len() + id + properties + payload.len());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        out.extend_from_slice(&pkid.to_be_bytes());
    }
    if properties == 1 {
        out.push(0);
    }
    out.extend_from_slice(payload);
}

/// Appends a packet of just a packet id: PUBACK, PUBREC, PUBCOMP (success, which MQTT 5
/// also writes without a reason code).
fn put_ack(out: &mut Vec<u8>, first: u8, pkid: u16) {
    out.extend_from_slice(&[first, 2]);
    out.extend_from_slice(&pkid.to_be_bytes());
}

pub fn put_puback(out: &mut Vec<u8>, pkid: u16) {
    put_ack(out, 0x40, pkid);
}

pub fn put_pubrec(out: &mut Vec<u8>, pkid: u16) {
    put_ack(out, 0x50, pkid);
}

pub fn put_pubcomp(out: &mut Vec<u8>, pkid: u16) {
    put_ack(out, 0x70, pkid);
}

pub fn put_pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xc0, 0]);
}

/// A normal DISCONNECT (MQTT 5: reason 0, which may be left out).
pub fn put_disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xe0, 0]);
}

/// What a CONNECT says.
pub struct Hello<'a> {
    pub client_id: &'a str,
    pub keep_alive_s: u16,
    pub clean: bool,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    /// MQTT 5: how long the broker keeps the session after the connection ends.
    pub session_expiry_s: Option<u32>,
    /// MQTT 5: the largest packet chatload takes.
    pub max_packet: u32,
}

pub fn put_connect(out: &mut Vec<u8>, version: Version, hello: &Hello<'_>) {
    let mut bytes = BytesMut::new();
    let written = match version {
        Version::V311 => {
            let mut c = v4::Connect::new(hello.client_id);
            c.keep_alive = hello.keep_alive_s;
            c.clean_session = hello.clean;
            if let Some(u) = hello.username {
                c.set_login(u, hello.password.unwrap_or_default());
            }
            c.write(&mut bytes).is_ok()
        }
        Version::V5 => {
            let mut properties = v5::ConnectProperties::new();
            properties.session_expiry_interval = hello.session_expiry_s;
            properties.max_packet_size = Some(hello.max_packet);
            let c = v5::Connect {
                keep_alive: hello.keep_alive_s,
                client_id: hello.client_id.to_string(),
                clean_start: hello.clean,
                properties: Some(properties),
            };
            let login = hello
                .username
                .map(|u| v5::Login::new(u, hello.password.unwrap_or_default()));
            c.write(&None, &login, &mut bytes).is_ok()
        }
    };
    // Writing fails only for fields longer than MQTT's 65,535 bytes, which the scenario's
    // templates and credentials do not reach; such a CONNECT is left out and the broker's
    // silence times the connection out.
    if written {
        out.extend_from_slice(&bytes);
    }
}

/// A SUBSCRIBE to `topics` at `qos`; MQTT 5 asks the broker not to send our own group
/// messages back.
pub fn put_subscribe(out: &mut Vec<u8>, version: Version, pkid: u16, topics: &[String], qos: u8) {
    let mut bytes = BytesMut::new();
    let written = match version {
        Version::V311 => {
            let q = if qos == 0 {
                QoS4::AtMostOnce
            } else {
                QoS4::AtLeastOnce
            };
            let mut s = v4::Subscribe::new_many(
                topics
                    .iter()
                    .map(|t| v4::SubscribeFilter::new(t.clone(), q)),
            );
            s.pkid = pkid;
            s.write(&mut bytes).is_ok()
        }
        Version::V5 => {
            let q = if qos == 0 {
                QoS5::AtMostOnce
            } else {
                QoS5::AtLeastOnce
            };
            let mut s = v5::Subscribe::new_many(
                topics.iter().map(|t| {
                    let mut f = v5::Filter::new(t.clone(), q);
                    f.nolocal = true;
                    f
                }),
                None,
            );
            s.pkid = pkid;
            s.write(&mut bytes).is_ok()
        }
    };
    if written {
        out.extend_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What chatload writes, rumqttc's codec reads back as the same packet.
    #[test]
    fn publishes_written_by_hand_read_back_through_the_codec() {
        let payload = vec![b'x'; 300];
        for (version, qos) in [
            (Version::V311, 0),
            (Version::V311, 1),
            (Version::V5, 0),
            (Version::V5, 1),
        ] {
            let mut out = Vec::new();
            put_publish(&mut out, version, "u/17/in", qos, 42, &payload);
            assert_eq!(packet_len(&out, 1 << 20), Ok(Some(out.len())));
            let (topic, read_qos, pkid, body) = match version {
                Version::V311 => match v4::Packet::read(&mut BytesMut::from(&out[..]), 1 << 20) {
                    Ok(v4::Packet::Publish(p)) => (p.topic, p.qos as u8, p.pkid, p.payload),
                    other => panic!("{other:?}"),
                },
                Version::V5 => match v5::Packet::read(&mut BytesMut::from(&out[..]), None) {
                    Ok(v5::Packet::Publish(p)) => (
                        String::from_utf8(p.topic.to_vec()).unwrap(),
                        p.qos as u8,
                        p.pkid,
                        p.payload,
                    ),
                    other => panic!("{other:?}"),
                },
            };
            assert_eq!(topic, "u/17/in");
            assert_eq!(read_qos, qos);
            assert_eq!(pkid, if qos == 1 { 42 } else { 0 });
            assert_eq!(&body[..], &payload[..]);
            // And our own reader agrees.
            let Ok(Seen::Publish {
                qos: q,
                pkid: id,
                payload: at,
            }) = decode(version, &out)
            else {
                panic!()
            };
            assert_eq!((q, id), (qos, if qos == 1 { 42 } else { 0 }));
            assert_eq!(&out[at], &payload[..]);
        }
    }

    /// A broker's packets as rumqttc's codec writes them read as what they say.
    #[test]
    fn broker_packets_read_as_what_they_say() {
        let mut b = BytesMut::new();
        let mut p = v5::Publish::new("g/3", QoS5::AtLeastOnce, b"hello".to_vec(), None);
        p.pkid = 9;
        let props = v5::PublishProperties {
            message_expiry_interval: Some(60),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        p.properties = Some(props);
        p.write(&mut b).unwrap();
        let Ok(Seen::Publish { qos, pkid, payload }) = decode(Version::V5, &b) else {
            panic!()
        };
        assert_eq!((qos, pkid, &b[payload]), (1, 9, &b"hello"[..]));

        let mut b = BytesMut::new();
        let mut a = v5::PubAck::new(7, None);
        a.reason = v5::PubAckReason::NotAuthorized;
        a.write(&mut b).unwrap();
        assert_eq!(
            decode(Version::V5, &b),
            Ok(Seen::PubAck {
                pkid: 7,
                refused: Some("NotAuthorized".into())
            })
        );
        let mut b = BytesMut::new();
        v4::PubAck::new(7).write(&mut b).unwrap();
        assert_eq!(
            decode(Version::V311, &b),
            Ok(Seen::PubAck {
                pkid: 7,
                refused: None
            })
        );

        let mut b = BytesMut::new();
        v4::ConnAck::new(v4::ConnectReturnCode::BadUserNamePassword, false)
            .write(&mut b)
            .unwrap();
        let Ok(Seen::ConnAck {
            refused: Some(r), ..
        }) = decode(Version::V311, &b)
        else {
            panic!()
        };
        assert!(r.to_lowercase().contains("password"), "{r}");

        // CONNACK, success, Receive Maximum 20 (0x21), Server Keep Alive 7 s (0x13).
        let connack = [0x20, 9, 0, 0, 6, 0x21, 0, 20, 0x13, 0, 7];
        assert_eq!(
            decode(Version::V5, &connack),
            Ok(Seen::ConnAck {
                refused: None,
                receive_max: Some(20),
                server_keep_alive: Some(7),
            })
        );
        // A 3.1.1 broker's answer to an MQTT 5 CONNECT (return code 1) is not an MQTT 5
        // CONNACK: an error, which the pre-flight takes as its cue to ask in 3.1.1.
        assert!(decode(Version::V5, &[0x20, 2, 0, 1]).is_err());

        let mut b = BytesMut::new();
        v4::SubAck::new(1, vec![v4::SubscribeReasonCode::Failure])
            .write(&mut b)
            .unwrap();
        assert_eq!(
            decode(Version::V311, &b),
            Ok(Seen::SubAck {
                pkid: 1,
                refused: true
            })
        );
    }

    #[test]
    fn lengths_are_bounded_and_partial_packets_wait() {
        let mut out = Vec::new();
        put_publish(&mut out, Version::V311, "t", 0, 0, &[0; 200]);
        assert_eq!(packet_len(&out[..1], 1000), Ok(None));
        assert_eq!(packet_len(&out[..2], 1000), Ok(None));
        assert_eq!(packet_len(&out[..out.len() - 1], 1000), Ok(None));
        assert!(
            packet_len(&out, 100)
                .unwrap_err()
                .contains("at most 100 bytes")
        );
        assert!(packet_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], 1 << 30).is_err());
        // A PUBLISH whose topic length runs past its end.
        assert!(decode(Version::V311, &[0x30, 0x02, 0x00, 0x09]).is_err());
    }

    #[test]
    fn connect_and_subscribe_read_back_through_the_codec() {
        for version in [Version::V311, Version::V5] {
            let mut out = Vec::new();
            put_connect(
                &mut out,
                version,
                &Hello {
                    client_id: "chatload-u1",
                    keep_alive_s: 30,
                    clean: false,
                    username: Some("alice"),
                    password: Some("secret"),
                    session_expiry_s: Some(3600),
                    max_packet: 70_000,
                },
            );
            put_subscribe(&mut out, version, 1, &["u/1/in".into(), "g/2".into()], 1);
            let mut b = BytesMut::from(&out[..]);
            match version {
                Version::V311 => {
                    let Ok(v4::Packet::Connect(c)) = v4::Packet::read(&mut b, 1 << 20) else {
                        panic!()
                    };
                    assert_eq!(
                        (c.client_id.as_str(), c.keep_alive, c.clean_session),
                        ("chatload-u1", 30, false)
                    );
                    assert_eq!(c.login.map(|l| l.password), Some("secret".to_string()));
                    let Ok(v4::Packet::Subscribe(s)) = v4::Packet::read(&mut b, 1 << 20) else {
                        panic!()
                    };
                    assert_eq!((s.pkid, s.filters.len()), (1, 2));
                }
                Version::V5 => {
                    let Ok(v5::Packet::Connect(c, _, login)) = v5::Packet::read(&mut b, None)
                    else {
                        panic!()
                    };
                    let p = c.properties.unwrap();
                    assert_eq!(
                        (p.session_expiry_interval, p.max_packet_size),
                        (Some(3600), Some(70_000))
                    );
                    assert_eq!(login.map(|l| l.username), Some("alice".to_string()));
                    let Ok(v5::Packet::Subscribe(s)) = v5::Packet::read(&mut b, None) else {
                        panic!()
                    };
                    assert!(s.filters.iter().all(|f| f.nolocal));
                }
            }
            assert!(b.is_empty());
        }
    }
}
