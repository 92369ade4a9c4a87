from coffea_ad.cli import main

main()
