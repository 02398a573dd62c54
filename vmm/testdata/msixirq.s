	.code64
	.globl _start
# MSI-X through a virtio-rng function (BAR 0 at 0xc0000000, 00:01.0): its
# queue's vector 0 first carries vector 0x40, then is reprogrammed (masked,
# rewritten, unmasked) to 0x41, then raised while masked (its PBA bit must
# show it, no interrupt may arrive) and delivered on unmask. The test fills
# the descriptors and the avail ring entries; the guest only bumps avail idx.
# Counters land at 0x200000: +0 vector 0x40, +4 vector 0x41, +8 the PBA seen
# while masked, +12 the 0x41 count at that moment.
	.set BAR, 0xc0000000
	.set AVAIL, 0x11000
	.set USED, 0x12000
_start:
	mov $0x210000, %ebx
	mov $0x40, %ecx
	mov $handler_a, %eax
	call set_gate
	mov $0x41, %ecx
	mov $handler_b, %eax
	call set_gate
	lidt idtr
	mov $0xfee000f0, %eax
	movl $0x1ff, (%rax)             # LAPIC on, spurious vector 0xff
	# MSI-X enable: config dword 0x40 of 00:01.0, control word at 0x42
	mov $0xcf8, %dx
	mov $0x80000840, %eax
	out %eax, %dx
	mov $0xcfe, %dx
	mov $0x8000, %ax
	out %ax, %dx
	mov $BAR, %esi
	movl $0xfee00000, 0x4000(%rsi)  # table entry 0: address, data 0x40, unmasked
	movl $0, 0x4004(%rsi)
	movl $0x40, 0x4008(%rsi)
	movl $0, 0x400c(%rsi)
	movb $0, 0x14(%rsi)             # device_status: reset
	movb $1, 0x14(%rsi)
	movb $3, 0x14(%rsi)
	movl $1, 0x08(%rsi)             # driver_feature_select 1
	movl $1, 0x0c(%rsi)             # VIRTIO_F_VERSION_1
	movb $0xb, 0x14(%rsi)           # FEATURES_OK
	movw $0, 0x16(%rsi)             # queue_select 0
	movw $4, 0x18(%rsi)
	movl $0x10000, 0x20(%rsi)
	movl $0, 0x24(%rsi)
	movl $AVAIL, 0x28(%rsi)
	movl $0, 0x2c(%rsi)
	movl $USED, 0x30(%rsi)
	movl $0, 0x34(%rsi)
	movw $0, 0x1a(%rsi)             # queue_msix_vector 0
	movw $1, 0x1c(%rsi)             # queue_enable
	movb $0xf, 0x14(%rsi)           # DRIVER_OK

	# 1: vector 0x40
	movw $1, AVAIL+2
	movw $0, 0x3000(%rsi)
1:	cli
	cmpl $1, 0x200000
	jae 2f
	sti
	hlt
	jmp 1b
	# 2: masked, rewritten to 0x41, unmasked
2:	movl $1, 0x400c(%rsi)
	movl $0x41, 0x4008(%rsi)
	movl $0, 0x400c(%rsi)
	movw $2, AVAIL+2
	movw $0, 0x3000(%rsi)
3:	cli
	cmpl $1, 0x200004
	jae 4f
	sti
	hlt
	jmp 3b
	# 3: raised while masked: pending, delivered on unmask
4:	movl $1, 0x400c(%rsi)
	movw $3, AVAIL+2
	movw $0, 0x3000(%rsi)
	sti
5:	mov 0x6000(%rsi), %eax          # PBA: wait for the pending bit
	test $1, %eax
	jz 5b
	mov %eax, 0x200008
	mov 0x200004, %eax
	mov %eax, 0x20000c
	movl $0, 0x400c(%rsi)           # unmask
6:	cli
	cmpl $2, 0x200004
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

handler_a:
	push %rax
	incl 0x200000
	mov $0xfee000b0, %eax
	movl $0, (%rax)
	pop %rax
	iretq

handler_b:
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
