	.code64
	.globl _start
# Hyper-V SynIC and synthetic timer guest: three periodic timer messages
# through SINT2 (vector 0x50), then three direct-mode expiries (vector 0x51),
# then two one-shot messages from stimer2 (1 ms after TIME_REF_COUNT, then
# in the past, which expires at once).
# The byte at offset 8 (aeoi) set to 1 makes SINT2 auto-EOI: the message
# handler then never EOIs, and only vmm's auto-EOI emulation lets the
# next interrupt in. Counters and the last message land at 0x200000.
_start:
	jmp start
	.align 8
aeoi:	.quad 0
start:
	mov $0x200000, %edi
	mov $0x210000, %ebx
	mov $0x50, %ecx
	mov $msg_handler, %eax
	call set_gate
	mov $0x51, %ecx
	mov $direct_handler, %eax
	call set_gate
	lidt idtr
	# LAPIC on: SVR = enable | spurious vector 0xff
	mov $0xfee000f0, %eax
	movl $0x1ff, (%rax)
	# guest OS ID (needed by nothing here, but as a guest would)
	mov $0x40000000, %ecx
	mov $1, %eax
	xor %edx, %edx
	wrmsr
	# SynIC on, message page at 0x302000, SINT2 -> 0x50 (auto-EOI if asked)
	mov $0x40000080, %ecx
	mov $1, %eax
	wrmsr
	mov $0x40000083, %ecx
	mov $0x302001, %eax
	wrmsr
	mov $0x40000092, %ecx
	mov $0x50, %eax
	cmpb $0, aeoi
	je 1f
	or $0x20000, %eax
1:	wrmsr
	# stimer0: count 1 ms, periodic, message mode on SINT2
	mov $0x400000b1, %ecx
	mov $10000, %eax
	wrmsr
	mov $0x400000b0, %ecx
	mov $0x20003, %eax
	wrmsr
	sti
2:	hlt
	cmpl $3, 0(%rdi)
	jb 2b
	cli
	mov $0x400000b0, %ecx
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
	# stimer1: periodic, direct mode, vector 0x51
	mov $0x400000b3, %ecx
	mov $10000, %eax
	wrmsr
	mov $0x400000b2, %ecx
	mov $0x1513, %eax       # enable | periodic | vector 0x51 << 4 | direct (bit 12)
	wrmsr
	sti
3:	hlt
	cmpl $3, 4(%rdi)
	jb 3b
	cli
	mov $0x400000b2, %ecx
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
	# stimer2: one-shot, message mode on SINT2, 1 ms from now
	mov $0x40000020, %ecx
	rdmsr
	shl $32, %rdx
	or %rax, %rdx
	add $10000, %rdx
	mov %edx, %eax
	shr $32, %rdx
	mov $0x400000b5, %ecx
	wrmsr
	mov $0x400000b4, %ecx
	mov $0x20001, %eax      # enable | SINT2 << 16
	xor %edx, %edx
	wrmsr
4:	cli                     # check and sleep without losing the wakeup
	cmpl $1, 12(%rdi)
	jae 5f
	sti
	hlt
	jmp 4b
5:	mov $0x400000b4, %ecx   # an expired one-shot turns itself off
	rdmsr
	mov %eax, 40(%rdi)
	mov $0x400000b5, %ecx   # stimer2 again, count 1: in the past
	mov $1, %eax
	xor %edx, %edx
	wrmsr
	mov $0x400000b4, %ecx
	mov $0x20001, %eax
	wrmsr
6:	cli
	cmpl $2, 12(%rdi)
	jae 7f
	sti
	hlt
	jmp 6b
7:	mov $0x10, %al
	out %al, $0xf4
	hlt

# set_gate: interrupt gate for vector ecx -> handler eax in the IDT at rbx
set_gate:
	shl $4, %ecx
	add %rbx, %rcx
	mov %ax, (%rcx)
	mov %cs, %dx
	mov %dx, 2(%rcx)
	movb $0x8e, 5(%rcx)
	shr $16, %eax
	mov %ax, 6(%rcx)
	ret

msg_handler:
	push %rax
	push %rcx
	push %rdx
	incl 0x200000
	mov $0x302200, %ecx       # SIMP slot 2
	mov (%rcx), %eax
	mov %eax, 0x200010        # message type
	mov 16(%rcx), %eax
	mov %eax, 0x200014        # timer index
	cmp $2, %eax
	jne 3f
	incl 0x20000c             # stimer2's one-shots
3:	mov 24(%rcx), %rax
	mov %rax, 0x200018        # expiration time
	mov 32(%rcx), %rax
	mov %rax, 0x200020        # delivery time
	movl $0, (%rcx)           # free the slot
	testb $1, 5(%rcx)         # message pending: tell vmm with EOM
	jz 1f
	incl 0x200008
	mov $0x40000084, %ecx
	xor %eax, %eax
	xor %edx, %edx
	wrmsr
1:	cmpb $0, aeoi
	jne 2f
	mov $0xfee000b0, %eax
	movl $0, (%rax)           # EOI
2:	pop %rdx
	pop %rcx
	pop %rax
	iretq

direct_handler:
	push %rax
	incl 0x200004
	mov $0xfee000b0, %eax
	movl $0, (%rax)
	pop %rax
	iretq

	.align 8
idtr:
	.word 256*16-1
	.quad 0x210000
