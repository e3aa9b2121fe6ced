def total(xs):
