print("slmstore")
