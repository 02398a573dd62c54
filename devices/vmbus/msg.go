package vmbus

// VMBus control messages (Linux include/linux/hyperv.h enum
// vmbus_channel_message_type and the vmbus_channel_* structs). Every
// message starts with {u32 msgtype, u32 padding}; offsets below count from
// the start of the message.
const (
	msgOfferChannel        = 1
	msgRescindOffer        = 2
	msgRequestOffers       = 3
	msgAllOffersDelivered  = 4
	msgOpenChannel         = 5
	msgOpenChannelResult   = 6
	msgCloseChannel        = 7
	msgGPADLHeader         = 8
	msgGPADLBody           = 9
	msgGPADLCreated        = 10
	msgGPADLTeardown       = 11
	msgGPADLTorndown       = 12
	msgRelidReleased       = 13
	msgInitiateContact     = 14
	msgVersionResponse     = 15
	msgUnload              = 16
	msgUnloadResponse      = 17
	msgModifyChannel       = 22
	msgModifyChannelResult = 24
	msgTypes               = 25
)

// Sizes of the fixed messages; a guest message shorter than its type's
// size is dropped.
const (
	sizeOffer          = 196
	sizeOpenChannel    = 148
	sizeOpenResult     = 20
	sizeCloseChannel   = 12
	sizeGPADLCreated   = 20
	sizeGPADLTeardown  = 16
	sizeGPADLTorndown  = 12
	sizeRelidReleased  = 12
	sizeInitiate       = 40
	sizeVersionResp    = 16
	sizeHeaderOnly     = 8
	sizeRescind        = 12
	sizeModifyChannel  = 16
	sizeModifyResponse = 16
	userDataSize       = 120
)

// minSize is the least length of each guest->host message type.
var minSize = [msgTypes]int{
	msgRequestOffers:   sizeHeaderOnly,
	msgOpenChannel:     sizeOpenChannel,
	msgCloseChannel:    sizeCloseChannel,
	msgGPADLHeader:     28,
	msgGPADLBody:       16,
	msgGPADLTeardown:   sizeGPADLTeardown,
	msgRelidReleased:   sizeRelidReleased,
	msgInitiateContact: sizeInitiate,
	msgUnload:          sizeHeaderOnly,
	msgModifyChannel:   sizeModifyChannel,
}

func msgName(t uint32) string {
	names := [msgTypes]string{
		msgOfferChannel: "OFFERCHANNEL", msgRescindOffer: "RESCIND_CHANNELOFFER",
		msgRequestOffers: "REQUESTOFFERS", msgAllOffersDelivered: "ALLOFFERS_DELIVERED",
		msgOpenChannel: "OPENCHANNEL", msgOpenChannelResult: "OPENCHANNEL_RESULT",
		msgCloseChannel: "CLOSECHANNEL", msgGPADLHeader: "GPADL_HEADER", msgGPADLBody: "GPADL_BODY",
		msgGPADLCreated: "GPADL_CREATED", msgGPADLTeardown: "GPADL_TEARDOWN",
		msgGPADLTorndown: "GPADL_TORNDOWN", msgRelidReleased: "RELID_RELEASED",
		msgInitiateContact: "INITIATE_CONTACT", msgVersionResponse: "VERSION_RESPONSE",
		msgUnload: "UNLOAD", msgUnloadResponse: "UNLOAD_RESPONSE",
		msgModifyChannel: "MODIFYCHANNEL", msgModifyChannelResult: "MODIFYCHANNEL_RESPONSE",
	}
	if t < msgTypes && names[t] != "" {
		return names[t]
	}
	return "type_" + itoa(t)
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b [10]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

// Protocol versions (major << 16 | minor) the host accepts, and the
// message connection ids Hyper-V uses: 1 for everything before 5.0, 4 for
// INITIATE_CONTACT of 5.0 and later (whose VERSION_RESPONSE then names
// connection 1 for what follows).
const (
	// Version0_13 (Windows Server 2008) and Version1_1 (Windows 7) signal
	// channels through the guest's interrupt page (legacy below).
	Version0_13 = 13
	Version1_1  = 1<<16 | 1
	// Version2_4 (Windows 8) brought per-channel event flags in the SIEF
	// page; Version3_0 (Windows 8.1) is what iPXE checks for before it
	// reconnects at 0.13.
	Version2_4 = 2<<16 | 4
	Version3_0 = 3 << 16
	Version4_0 = 4 << 16
	Version4_1 = 4<<16 | 1
	Version5_0 = 5 << 16
	Version5_1 = 5<<16 | 1
	Version5_2 = 5<<16 | 2
	Version5_3 = 5<<16 | 3

	ConnMessage   = 1
	ConnMessage5x = 4
	// ConnEvent is the shared guest->host event connection: a guest that
	// sets channel bits in the second half of its interrupt page signals
	// it (Linux at 0.13 and iPXE at every version, whatever the offer's
	// connection id says).
	ConnEvent = 2
	// MessageSINT is the SINT host->guest control messages and channel
	// interrupts use unless a 5.x guest names another.
	MessageSINT = 2
	// eventConnBase + relid is a channel's guest->host event connection
	// (dedicated interrupts, every version but 0.13).
	eventConnBase = 16
	// MaxRelid: relids index the 2048-bit event flags of a SIEF slot;
	// Linux ignores bit 0.
	MaxRelid = 2047
)

// NT status values in creation/open results.
const (
	statusSuccess      = 0
	statusUnsuccessful = 0xc0000001
)
